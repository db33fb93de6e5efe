#!/usr/bin/env bash
# pair.sh TREE TAG PORT: bench --procs 2 --machines 2 as two pretend machines from TREE, JSON to TAG.json
tree=$1 tag=$2 port=$3
cd "$tree"
(./moeyard bench --procs 2 --machines 2 --machine-rank 1 --master-addr 127.0.0.1 --master-port $port --machine-name pm1 --tokens 512 --iters 20 >/tmp/m1-$tag.txt 2>&1 &)
./moeyard bench --procs 2 --machines 2 --machine-rank 0 --master-addr 127.0.0.1 --master-port $port --machine-name pm0 --tokens 512 --iters 20 --json /work/meas/links/$tag.json 2>&1 | grep -E "fused|copy|verified:"
sleep 2
