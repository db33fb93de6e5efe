#!/usr/bin/env bash
# two-machines.sh PORT LOG1 CMD...: runs the moeyard command CMD (a bench with --procs) twice on
# this host as machines 0 and 1 of one world (--machines 2 --machine-rank I, rank 0's store on
# 127.0.0.1:PORT, machine names that differ, so that the two share no memory and cross between
# them as machines do: NCCL on the cuda backend, the transport on the cpu one). Machine 0's output
# is this script's, machine 1's goes to LOG1. Exit: machine 0's code, else machine 1's; 200 when
# NCCL refused to set up a world of several ranks on one GPU (which says nothing of moeyard: the
# caller reports the step as skipped).
set -uo pipefail
port=$1 log1=$2
shift 2
"$@" --machines 2 --machine-rank 1 --master-addr 127.0.0.1 --master-port "$port" --machine-name pretend-1 >"$log1" 2>&1 &
m1=$!
trap 'kill "$m1" 2>/dev/null' EXIT
log0=$(mktemp /tmp/moeyard-machine0.XXXXXX)
"$@" --machines 2 --machine-rank 0 --master-addr 127.0.0.1 --master-port "$port" --machine-name pretend-0 2>&1 | tee "$log0"
rc=${PIPESTATUS[0]}
wait "$m1"
rc1=$?
trap - EXIT
# NCCL's own refusal only ("ncclCommInitRankConfig failed: <code>"): its set-up waiting for a
# peer ("did not finish within"), a machine killed or stuck, is a failure
refused=$(grep -h "ncclCommInitRankConfig failed" "$log0" "$log1" 2>/dev/null | head -1)
rm -f "$log0"
if { [ "$rc" -ne 0 ] || [ "$rc1" -ne 0 ]; } && [ -n "$refused" ]; then
  echo "two-machines: NCCL refused a world of several ranks on one GPU: $refused"
  exit 200
fi
[ "$rc" -ne 0 ] && exit "$rc"
exit "$rc1"
