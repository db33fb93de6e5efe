#!/usr/bin/env bash
# Speculative shuffling between two machines made of Linux namespaces (bench/machines/rehearse.sh:
# an address, a /dev/shm and a host name each, a virtual Ethernet pair between them), the link
# left as it is or shaped to RATE with a token bucket: ESFT law, layers 1..4, 2 machines x 2 rank
# processes (one node each) x 256 tokens, hidden 1024; the affinity model and the grouped placement
# learned from the other three tasks. Each run times the home run and the speculative one; the
# objective (ranks, nodes) alternates within each round. Run from the repository root, as root.
set -euo pipefail
S=${ESFT:-../shared/data/esft}
out=bench/results/speculate-machines-2026-12-06
model=${TMPDIR:-/tmp}/speculate-machines-law-model.json
./moeyard speculate --train "$S/intent.npy" --train "$S/summary.npy" --train "$S/translation.npy" --eval "$S/law.npy" \
  --gpus 4 --placement-out "$out/law-grouped.json" --model-out "$model" > /dev/null
common=(--trace "$S/law.npy" --layers 1:5 --tokens 256 --hidden 1024 --placement "$out/law-grouped.json" --speculate "$model" --iters 5)
for round in 1 2 3; do
  for link in veth 2gbit; do
    shape=()
    [ "$link" = 2gbit ] && shape=(--link "tbf rate 2gbit burst 4mb latency 100ms")
    for objective in ranks nodes; do
      bash bench/machines/rehearse.sh "${shape[@]}" -- bench --procs 2 MACHINE "${common[@]}" \
        --speculate-objective "$objective" --json "$out/$link-$objective-$round.json" > "$out/$link-$objective-$round.txt" 2>&1
    done
  done
done
rm -f "$model"
