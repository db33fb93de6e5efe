#!/usr/bin/env bash
# Speculative shuffling on the data path, synthetic affinity trace (as in speculate-2026-12-04.md):
# model and grouped placement from the first 8192 tokens, all layers of the last 2048 (8 ranks x 256).
set -euo pipefail
out=bench/results/speculate-layers-2026-12-04
tmp=$(mktemp -d)
./moeyard trace synth --layers 26 --experts 64 --topk 6 --tokens 10240 --skew 0.4 --affinity 0.65 --domains 8 --seed 1 \
  --out "$tmp/syn.npy" > /dev/null
python3 -c "import numpy as np, sys; X = np.load(sys.argv[1]); np.save(sys.argv[2], X[:8192]); np.save(sys.argv[3], X[8192:])" \
  "$tmp/syn.npy" "$tmp/syn_train.npy" "$tmp/syn_eval.npy"
./moeyard speculate --train "$tmp/syn_train.npy" --eval "$tmp/syn_eval.npy" --gpus 8 \
  --placement-out "$out/synthetic-grouped.json" --model-out "$out/synthetic-model.json" --json "$out/synthetic-speculate.json" > /dev/null
for nodes in 1 2; do
  ./moeyard bench --trace "$tmp/syn_eval.npy" --layers 1:26 --ranks 8 --nodes $nodes --placement "$out/synthetic-grouped.json" \
    --speculate "$out/synthetic-model.json" --iters 3 --json "$out/synthetic-layers-n$nodes.json" | tee "$out/synthetic-layers-n$nodes.txt"
done
rm -rf "$tmp"
