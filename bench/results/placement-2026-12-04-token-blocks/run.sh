#!/bin/bash
# deterministic re-measurements for the dispatch columns (trivial, EPLB, ilp unseen/none)
cd "$(dirname "$0")/../../.."  # the repository root
export MOEYARD_NO_BUILD=1
D=../shared/data/esft
M=${OUT:-/tmp/meas}
mkdir -p $M
T="intent law summary translation"
for a in trivial eplb; do
  ./moeyard plan --trace $D/intent.npy --trace $D/law.npy --trace $D/summary.npy --trace $D/translation.npy \
    --gpus 16 --nodes 2 --replicas 80 --algorithm $a > $M/four-$a.txt 2>$M/four-$a.err
done
for f in $T; do
  args=""
  for o in $T; do [ $o != $f ] && args="$args --trace $D/$o.npy"; done
  ./moeyard plan $args --eval-trace $D/$f.npy --gpus 16 --nodes 2 --replicas 80 --algorithm eplb > $M/fold-$f-eplb.txt 2>$M/fold-$f-eplb.err
  ./moeyard plan $args --eval-trace $D/$f.npy --gpus 16 --nodes 2 --replicas 80 --algorithm ilp --robust unseen --locality none \
    --time-limit 60 --workers 2 > $M/fold-$f-none.txt 2>$M/fold-$f-none.err
done
for f in $T; do
  ./moeyard plan --trace $D/$f.npy --gpus 16 --nodes 2 --replicas 80 --algorithm eplb > $M/one-$f-eplb.txt 2>$M/one-$f-eplb.err
done
python3 -c "
import numpy as np
a=[np.load('$D/'+t+'.npy') for t in '$T'.split()]
np.save('$M/all4.npy', np.concatenate(a))
"
./moeyard plan --trace $M/all4.npy --gpus 16 --nodes 2 --replicas 80 --algorithm eplb > $M/one-all4-eplb.txt 2>$M/one-all4-eplb.err
for aff in 0.5 0.9; do
  ./moeyard trace synth --preset deepseek-v3 --tokens 8192 --skew 0.4 --affinity $aff --seed 1 --out $M/dsv3-$aff.npy 2>$M/synth-$aff.err
  ./moeyard plan --trace $M/dsv3-$aff.npy --gpus 64 --nodes 8 --replicas 320 --algorithm eplb > $M/one-dsv3-$aff-eplb.txt 2>$M/one-dsv3-$aff-eplb.err
done
echo done > $M/DONE
