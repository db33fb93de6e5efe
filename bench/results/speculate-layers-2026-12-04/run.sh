#!/usr/bin/env bash
# Speculative shuffling on the data path, ESFT traces: for each task, an affinity model and a grouped
# placement learned from the other three tasks (moeyard speculate), then all layers 1..25 of the task
# with and without speculation (moeyard bench --layers), 8 ranks on 2 nodes. Run from the repository root.
set -euo pipefail
S=${ESFT:-../shared/data/esft}
out=bench/results/speculate-layers-2026-12-04
tasks=(intent law summary translation)
for task in "${tasks[@]}"; do
  train=()
  for o in "${tasks[@]}"; do [ "$o" = "$task" ] || train+=(--train "$S/$o.npy"); done
  ./moeyard speculate "${train[@]}" --eval "$S/$task.npy" --gpus 8 \
    --placement-out "$out/$task-grouped.json" --model-out "$out/$task-model.json" --json "$out/$task-speculate.json" > /dev/null
  ./moeyard bench --trace "$S/$task.npy" --layers 1:26 --ranks 8 --nodes 2 --placement "$out/$task-grouped.json" \
    --speculate "$out/$task-model.json" --iters 3 --json "$out/$task-layers.json" | tee "$out/$task-layers.txt"
done
