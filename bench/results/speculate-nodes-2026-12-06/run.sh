#!/usr/bin/env bash
# Rows crossing nodes with the rank-only and the node-aware speculation objective: all four ESFT
# tasks, each with the affinity model and grouped placement learned from the other three; 8 ranks
# in 2 and 4 nodes and 16 ranks in 2. bench-*.json: the data path's rows (bench --layers 0:26, rank
# threads); report-*.json: moeyard speculate's report. Run from the repository root.
set -euo pipefail
S=${ESFT:-../shared/data/esft}
out=bench/results/speculate-nodes-2026-12-06
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tasks=(intent law summary translation)
for shape in "8 2" "8 4" "16 2"; do
  read -r G N <<< "$shape"
  for e in "${tasks[@]}"; do
    train=()
    for o in "${tasks[@]}"; do [ "$o" = "$e" ] || train+=(--train "$S/$o.npy"); done
    [ -f "$tmp/$e-g$G.json" ] || ./moeyard speculate "${train[@]}" --eval "$S/$e.npy" --gpus "$G" \
      --placement-out "$tmp/$e-g$G.json" --model-out "$tmp/$e-model.json" > /dev/null 2>&1
    for obj in ranks nodes; do
      ./moeyard bench --trace "$S/$e.npy" --layers 0:26 --ranks "$G" --nodes "$N" --hidden 256 --iters 1 \
        --placement "$tmp/$e-g$G.json" --speculate "$tmp/$e-model.json" --speculate-objective "$obj" \
        --json "$out/bench-$e-$G-$N-$obj.json" > /dev/null
      ./moeyard speculate "${train[@]}" --eval "$S/$e.npy" --gpus "$G" --nodes "$N" --speculate-objective "$obj" \
        --json "$out/report-$e-$G-$N-$obj.json" > /dev/null 2>&1
    done
  done
done
