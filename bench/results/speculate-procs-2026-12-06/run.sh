#!/usr/bin/env bash
# Speculative shuffling with rank threads, rank processes over shared memory, and two pretend
# machines on this host: ESFT law, layers 1..4, 4 ranks in 2 nodes x 256 tokens, hidden 1024; the
# affinity model and grouped placement learned from the other three tasks. Three rounds, the three
# worlds alternating within each. Run from the repository root.
set -euo pipefail
S=${ESFT:-../shared/data/esft}
out=bench/results/speculate-procs-2026-12-06
model=${TMPDIR:-/tmp}/speculate-procs-law-model.json
./moeyard speculate --train "$S/intent.npy" --train "$S/summary.npy" --train "$S/translation.npy" --eval "$S/law.npy" \
  --gpus 4 --placement-out "$out/law-grouped.json" --model-out "$model" > /dev/null
common=(--trace "$S/law.npy" --layers 1:5 --tokens 256 --hidden 1024 --placement "$out/law-grouped.json" --speculate "$model" --iters 5)
port=${PORT:-29631}
for round in 1 2 3; do
  ./moeyard bench "${common[@]}" --ranks 4 --nodes 2 --json "$out/threads-$round.json" > "$out/threads-$round.txt"
  ./moeyard bench "${common[@]}" --procs 4 --nodes 2 --json "$out/procs-$round.json" > "$out/procs-$round.txt"
  machine=(--procs 2 --machines 2 --master-addr 127.0.0.1 --master-port "$port")
  ./moeyard bench "${common[@]}" "${machine[@]}" --machine-rank 1 --machine-name pretend-1 > /dev/null &  # rank 0 on machine 0 reports
  ./moeyard bench "${common[@]}" "${machine[@]}" --machine-rank 0 --machine-name pretend-0 --json "$out/machines-$round.json" \
    > "$out/machines-$round.txt"
  wait
done
rm -f "$model"
