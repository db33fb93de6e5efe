#!/usr/bin/env bash
# Run on the GPU machine, from the repository root, after bench/gpu/bundle.sh on the CPU machine
# (it fills the ignored .gpu/ folder: a Java 25 runtime and the bench jars):
#
#   bash bench/gpu/run.sh
#
# One shot, inside a total budget (MOEYARD_GPU_BUDGET_S, default 330 s, counted from the start of
# this script). Steps in order of value, each with its own timeout:
#   1. selftest       moeyard selftest --backend cuda: random configs (every dtype, wide top-k, many
#                     ranks), through the cuda communicators (CudaWorld): fused and unfused on the
#                     device path (engine device memory, a stream per rank), fused on the host path,
#                     vs the cpu fused path, bit for bit
#   2. bench          moeyard bench --backend cuda --preset deepseek-v3 (8 x 4096 tokens, hidden 7168,
#                     top-8 of 256, bf16), timed through the communicators' device path
#                                                               -> bench-deepseek-v3.json
#   3. torch          bench/gpu/torch_baseline.py, Megatron's unfused path in PyTorch on step 2's very
#                     routing                                   -> torch-baseline.json
#   4. sanitizer      compute-sanitizer memcheck on a tiny selftest (skipped on gVisor, which refuses it);
#      racecheck      then its racecheck (shared-memory hazards) on another
#   5. gpu-tests      the native module's JUnit tests (GpuTestMain --require-gpu): CudaWorldGpuTest (the
#                     communicators vs the reference and vs the cpu communicator, no allocation in
#                     steady state, misuse failing every rank) and the host tests
#   6. cuda-ipc       CudaIpcGpuTest (GpuTestMain --class): 2 and 3 processes on the one GPU share
#                     device buffers through CUDA IPC, each writes into the others' and checks its own;
#                     CudaWorldProcessGpuTest: the cuda communicator with one rank per process
#                     (CudaWorld.join: 2, 3, and 4 as 2 nodes), every rank vs the reference
#   7. nccl           NcclChannelGpuTest (GpuTestMain --require-nccl): an NCCL world of one sends a
#                     buffer to itself (grouped ncclSend/ncclRecv). libmoeyard_cuda.so dlopens
#                     libnccl.so.2 itself, found through LD_LIBRARY_PATH, which this script points at
#                     python3's nvidia.nccl package; NCCL not loading fails the step with the reason
#      nccl-machines  NcclMachinesGpuTest: 4 rank processes as 2 pretend machines, the node-level path's
#                     messages between them on an NCCL communicator of all 4 (NCCL_MULTI_RANK_GPU_ENABLE=1,
#                     so that NCCL 2.30 takes several ranks of one GPU; where its set-up still refuses,
#                     the test is reported aborted with NCCL's reason)
#   8. procs          moeyard bench --backend cuda --procs 8 --preset deepseek-v3 --tokens 512: one rank
#                     per process (CUDA IPC), beside sweep-512's virtual ranks (its JSON in logs.tgz)
#      procs-machines the same at 2 x 2 ranks as two pretend machines (bench/gpu/two-machines.sh):
#                     NCCL between them, each machine on its own clock (its JSON in logs.tgz)
#   9. esft-law       moeyard bench --backend cuda on a measured routing trace (ESFT law, layer 12)
#                                                               -> bench-esft-law.json
#  10. sweep-T        the deepseek-v3 shape at 128, 512, 16384 tokens per rank -> bench-deepseek-v3-tT.json
# A step that the budget leaves too little time for is reported as skipped, which is not a failure;
# a step that ran and failed or timed out is. At most 8 files land in $OUT (the GPU machine returns
# no more): the 6 bench/torch JSONs, summary.txt and logs.tgz (every step's log, run.log, gpu.txt).
# Exit: 0 every step that ran passed; 3 the CUDA backend is unavailable (the reason is printed);
# 1 otherwise; 2 no bundle.
# MOEYARD_GPU_STEPS="nccl gpu-tests" (names or bash patterns such as sweep-*, space or comma separated)
# runs only those steps; the others are reported as skipped (not selected). Unset: every step.
# MOEYARD_GPU_DRY_RUN=1 runs the same steps, budget logic and files on the cpu backend at a tiny shape
# (to test this script without a GPU): torch then runs on the CPU when python3 has torch (else it is
# skipped), the sanitizer, gpu-tests, cuda-ipc, nccl and nccl-machines are skipped; procs runs 2 cpu rank processes. MOEYARD_GPU_JAVA names a java to use instead of
# the bundled runtime (dry runs on a machine with a JDK 25).
set -uo pipefail
t_start=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${OUT:-}
[ -n "$out" ] || out=$(mktemp -d /tmp/moeyard-gpu.XXXXXX)
mkdir -p "$out"
budget=${MOEYARD_GPU_BUDGET_S:-330}
deadline=$(( t_start + budget ))
reserve=12   # kept back for the table and the log archive
dry=${MOEYARD_GPU_DRY_RUN:-0}
only=${MOEYARD_GPU_STEPS:-}
status=0
summary=()
# logs and scratch (the routing file) stay out of $OUT; only logs.tgz goes there
work=$(mktemp -d /tmp/moeyard-gpu-work.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
jre_dir=""
trap 'rm -rf "$work" ${jre_dir:+"$jre_dir"}' EXIT

log() { echo "run.sh: $*" | tee -a "$logs/run.log"; }
left() { echo $(( deadline - $(date +%s) - reserve )); }
selected() {
  [ -z "$only" ] && return 0
  local w ws
  IFS=', ' read -ra ws <<< "$only"   # read, not a bare expansion: sweep-* must not match files
  for w in "${ws[@]}"; do
    # shellcheck disable=SC2053
    [[ $1 == $w ]] && return 0
  done
  return 1
}

# step NAME WANT MIN CMD...: runs CMD with timeout min(WANT, time left), output to $logs/NAME.log
# (and the terminal); skipped (not a failure) when less than MIN seconds are left.
step() {
  local name=$1 want=$2 min=$3; shift 3
  if ! selected "$name"; then
    log "$name: skipped: not in MOEYARD_GPU_STEPS ($only)"
    summary+=("$name: skipped (not selected)")
    return 200
  fi
  local l; l=$(left)
  if [ "$l" -lt "$min" ]; then
    log "$name: skipped: ${l}s of the budget left, it needs ${min}s"
    summary+=("$name: skipped (time: ${l}s left, needs ${min}s)")
    return 200
  fi
  local t=$(( l < want ? l : want ))
  log "$name: $* (timeout ${t}s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=5 "$t" "$@" </dev/null 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) summary+=("$name: ok (${dt}s)") ;;
    124|137) summary+=("$name: TIMED OUT after ${dt}s (timeout ${t}s)"); status=1 ;;
    200) summary+=("$name: skipped (it cannot run here: see $name.log)") ;;
    *) summary+=("$name: FAILED rc=$rc (${dt}s)"); status=1 ;;
  esac
  log "$name: rc=$rc in ${dt}s"
  return $rc
}
skip() { log "$1: skipped: $2"; summary+=("$1: skipped ($2)"); }

# ---- the runtime
if [ -n "${MOEYARD_GPU_JAVA:-}" ]; then
  JAVA=$MOEYARD_GPU_JAVA
else
  if [ ! -f .gpu/jre.tgz ] || [ ! -d .gpu/lib ]; then
    echo "run.sh: no .gpu/ bundle here: run bash bench/gpu/bundle.sh on the CPU machine first" >&2
    exit 2
  fi
  jre_dir=$(mktemp -d /tmp/moeyard-jre.XXXXXX)
  tar xzf .gpu/jre.tgz -C "$jre_dir" || { echo "run.sh: cannot unpack .gpu/jre.tgz" >&2; exit 2; }
  JAVA=$jre_dir/jre/bin/java
fi
log "bundle commit: $(cat .gpu/commit 2>/dev/null | tr '\n' ' '); out: $out; budget ${budget}s"
cp=".gpu/lib/*"
[ -n "${MOEYARD_GPU_CP:-}" ] && cp=$MOEYARD_GPU_CP

# NCCL from the Python package only (a file-system search can take 30 s). libmoeyard_cuda.so opens
# libnccl.so.2 by name (dlopen), so the folder goes on LD_LIBRARY_PATH before any JVM starts; the
# cuda backend itself does not need NCCL, the nccl step does.
nccl=$(timeout 20 python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
if [ -n "$nccl" ] && [ -e "$nccl/libnccl.so.2" ]; then
  export LD_LIBRARY_PATH=$nccl:${LD_LIBRARY_PATH:-}
  log "libnccl: $nccl"
else
  log "libnccl: not found in python3's nvidia.nccl (the nccl step will fail with the loader's reason)"
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | tee "$logs/gpu.txt" | sed 's/^/run.sh: gpu: /'
fi
gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
host_mib=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
heap_mib=$(( host_mib * 6 / 10 ))
# the Vector API module: the cpu reference that verifies every GPU result runs its vector loops
jvm_opts=("-Xmx${heap_mib}m" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
          -Dorg.bytedeco.javacpp.cachedir=/tmp/jcache -Djava.io.tmpdir=/tmp)
jvm=("$JAVA" "${jvm_opts[@]}" -cp "$cp" io.moeyard.bench.cli.Moeyard)
log "java: $("$JAVA" -version 2>&1 | head -1); uname -r: $(uname -r)"

backend=cuda
shape=()
main_tokens=()
sizes=(128 512 16384)
selftest_args=(--cases 150 --seed 1)
if [ "$dry" = 1 ]; then
  backend=cpu
  shape=(--hidden 256)
  main_tokens=(--tokens 32)
  sizes=(8 16 64)
  selftest_args=(--cases 20 --seed 1 --max-tokens 32)
  log "dry run: cpu backend, hidden 256, tokens ${sizes[*]}"
fi

# ---- 1. selftest (stop here when the backend is unavailable)
step selftest 70 30 "${jvm[@]}" selftest --backend "$backend" "${selftest_args[@]}"
rc=$?
if [ $rc -eq 3 ]; then
  echo "run.sh: $(grep -m1 'CUDA backend unavailable' "$logs/selftest.log")" >&2
  echo "run.sh: stopping: the cuda backend cannot run here" >&2
  tar czf "$out/logs.tgz" -C "$work" logs
  exit 3
fi

# ---- 2. the deepseek-v3 preset, 4096 tokens per rank
# (-Dmoeyard.bench.combine-candidates: the combine tuning candidates of combine.cu, each checked against
# the cpu output and timed after the main figures; MOEYARD_GPU_COMBINE_CANDIDATES= turns them off)
cands=${MOEYARD_GPU_COMBINE_CANDIDATES-2,3,4,5,6,7}
[ "$backend" = cpu ] && cands=""
jvm_bench=("$JAVA" "${jvm_opts[@]}" "-Dmoeyard.bench.combine-candidates=$cands" -cp "$cp" io.moeyard.bench.cli.Moeyard)
step bench 130 40 "${jvm_bench[@]}" bench --backend "$backend" --preset deepseek-v3 "${main_tokens[@]}" "${shape[@]}" \
  --json "$out/bench-deepseek-v3.json" --routing-out "$work/routing-deepseek-v3.npy"

# ---- 3. the PyTorch peer baseline (Megatron's unfused path) on step 2's very routing
routing_arg=()
[ -f "$work/routing-deepseek-v3.npy" ] && routing_arg=(--routing "$work/routing-deepseek-v3.npy")
torch_args=()
[ "$dry" = 1 ] && torch_args=(--device cpu --hidden 256 --iters 3 --warmup 1)
if timeout 20 python3 -c 'import torch' 2>/dev/null; then
  step torch 60 20 python3 bench/gpu/torch_baseline.py "${routing_arg[@]}" "${torch_args[@]}" --json "$out/torch-baseline.json"
else
  skip torch "python3 has no torch here"
fi

# ---- 4. memcheck on a tiny selftest. gVisor (kernel 4.4.0) refuses compute-sanitizer ("Device not
# supported", error 999): skipped there rather than counted as a failure of our code.
# CUDA_LAUNCH_BLOCKING makes a fault surface at the launch of the kernel that caused it.
if [ "$dry" = 1 ]; then
  skip sanitizer "dry run"
elif [ "$(uname -r)" = 4.4.0 ]; then
  skip sanitizer "gVisor (kernel 4.4.0) refuses compute-sanitizer"
elif command -v compute-sanitizer >/dev/null; then
  step sanitizer 60 25 env CUDA_LAUNCH_BLOCKING=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 \
    "${jvm[@]}" selftest --backend "$backend" --cases 4 --max-tokens 16 --seed 2
else
  skip sanitizer "compute-sanitizer not found"
fi
# racecheck (shared-memory hazards of the layout scans and the combine's staging), same tiny selftest
if [ "$dry" = 1 ]; then
  skip racecheck "dry run"
elif [ "$(uname -r)" = 4.4.0 ]; then
  skip racecheck "gVisor (kernel 4.4.0) refuses compute-sanitizer"
elif command -v compute-sanitizer >/dev/null; then
  step racecheck 60 25 compute-sanitizer --tool racecheck --racecheck-report hazard --target-processes all --error-exitcode 9 \
    "${jvm[@]}" selftest --backend "$backend" --cases 4 --max-tokens 16 --seed 3
else
  skip racecheck "compute-sanitizer not found"
fi

# ---- 5. the native module's JUnit tests (CudaWorldGpuTest & co.) through GpuTestMain (without the
# classes tagged gpu-step, which are steps of their own below)
native_cp=".gpu/native-test/test-classes:.gpu/native-test/classes:.gpu/native-test/lib/*:.gpu/lib/*"
if [ "$dry" = 1 ]; then
  skip gpu-tests "dry run"
elif [ -d .gpu/native-test/test-classes ]; then
  step gpu-tests 45 20 "$JAVA" "${jvm_opts[@]}" -cp "$native_cp" io.moeyard.cuda.GpuTestMain --require-gpu
else
  skip gpu-tests "no .gpu/native-test in the bundle"
fi

# ---- 6. CUDA IPC between processes (each test JVM starts its rank processes itself; about ten
# tests of 3-4 rank processes each, with their CUDA start-up: 160 s wanted so that a slow start does
# not turn into a timeout, which would count as a failure)
if [ "$dry" = 1 ]; then
  skip cuda-ipc "dry run"
elif [ -d .gpu/native-test/test-classes ]; then
  step cuda-ipc 160 25 "$JAVA" "${jvm_opts[@]}" -cp "$native_cp" io.moeyard.cuda.GpuTestMain --require-gpu \
    --class io.moeyard.cuda.CudaIpcGpuTest --class io.moeyard.cuda.CudaWorldProcessGpuTest
else
  skip cuda-ipc "no .gpu/native-test in the bundle"
fi

# ---- 7. an NCCL world of one (NcclChannel through libmoeyard_cuda.so's dlopen of libnccl.so.2;
# NCCL_DEBUG=WARN puts NCCL's own reason for a failure in the step's log)
if [ "$dry" = 1 ]; then
  skip nccl "dry run"
elif [ -d .gpu/native-test/test-classes ]; then
  step nccl 30 15 env NCCL_DEBUG="${NCCL_DEBUG:-WARN}" "$JAVA" "${jvm_opts[@]}" -cp "$native_cp" io.moeyard.cuda.GpuTestMain \
    --require-gpu --require-nccl --class io.moeyard.cuda.NcclChannelGpuTest
else
  skip nccl "no .gpu/native-test in the bundle"
fi
if [ "$dry" = 1 ]; then
  skip nccl-machines "dry run"
elif [ -d .gpu/native-test/test-classes ]; then
  step nccl-machines 90 45 env NCCL_DEBUG="${NCCL_DEBUG:-WARN}" "$JAVA" "${jvm_opts[@]}" -cp "$native_cp" io.moeyard.cuda.GpuTestMain \
    --require-gpu --require-nccl --class io.moeyard.cuda.NcclMachinesGpuTest
else
  skip nccl-machines "no .gpu/native-test in the bundle"
fi

# ---- 8. rank processes: the deepseek-v3 bench with one rank per process (CudaWorld.join: peers'
# device memory through CUDA IPC, host meetings over shared memory), 8 processes on the one GPU, at
# 512 tokens per rank (every process builds the whole workload: at 4096 that is ~4 GB of expert
# outputs each), to set beside sweep-512's virtual ranks. Its JSON goes into logs.tgz (the 8 files
# are spoken for).
if [ "$dry" = 1 ]; then
  procs_args=(--procs 2 --preset deepseek-v3 --tokens 32 "${shape[@]}")
else
  procs_args=(--procs 8 --preset deepseek-v3 --tokens 512 --iters 20 --warmup 5)
fi
step procs 90 50 "${jvm[@]}" bench --backend "$backend" "${procs_args[@]}" --json "$logs/bench-procs.json"

# ---- 8b. rank processes on two pretend machines: two bench commands (bench/gpu/two-machines.sh)
# of 2 rank processes each on the one GPU, whose node-level path's messages cross between the
# "machines" on NCCL (4 ranks, 2 nodes), each machine timed by its own clock rank. Its JSON and
# machine 1's log go into logs.tgz.
if [ "$dry" = 1 ]; then
  machines_args=(--procs 1 --preset deepseek-v3 --tokens 32 "${shape[@]}")
else
  machines_args=(--procs 2 --preset deepseek-v3 --tokens 512 --iters 20 --warmup 5)
fi
machines_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 29517)
step procs-machines 90 50 env NCCL_MULTI_RANK_GPU_ENABLE=1 NCCL_DEBUG="${NCCL_DEBUG:-WARN}" bash bench/gpu/two-machines.sh \
  "$machines_port" "$logs/procs-machines-1.log" "${jvm[@]}" bench --backend "$backend" "${machines_args[@]}" \
  --json "$logs/bench-procs-machines.json"

# ---- 9. measured routing: the ESFT law trace at layer 12 (8 ranks x ~1040 tokens, hidden 2048,
# 64 experts top-6), the shape of the CPU figures in bench/results/cpu-esft-*.md
if [ -f .gpu/data/law.npy ]; then
  step esft-law 40 25 "${jvm[@]}" bench --backend "$backend" --trace .gpu/data/law.npy --layer 12 \
    $([ "$dry" = 1 ] && echo "--tokens 16 --hidden 256") --json "$out/bench-esft-law.json"
else
  skip esft-law "no .gpu/data/law.npy in the bundle"
fi

# ---- 10. token sweep at the deepseek-v3 shape (8 ranks, hidden 7168, 256 experts, top-8, bf16);
# 4096 is step 2. Estimates per size, from rows = R*T*K received rows of 14336 B: GPU peak ~7 x rows
# (copy roofline, recv + perm + staging, expert outputs + their two unfused copies, x), heap ~3.2 x
# rows (expert outputs + every rank's download at once), off-heap ~2.2 x rows (the cpu reference's
# receive rows + the downloads' host copies).
sweep() {
  local t=$1 want=$2
  local rows_mib=$(( 8 * t * 8 * 14336 / 1048576 ))
  local need_gpu=$(( rows_mib * 7 )) need_heap=$(( rows_mib * 32 / 10 )) need_off=$(( rows_mib * 22 / 10 ))
  if { [ -n "$gpu_mib" ] && [ "$need_gpu" -gt $(( gpu_mib * 9 / 10 )) ]; } \
      || [ "$need_heap" -gt $(( heap_mib * 9 / 10 )) ] || [ $(( need_heap + need_off )) -gt $(( host_mib * 8 / 10 )) ]; then
    skip "sweep-$t" "memory: needs ~${need_gpu} MiB of GPU memory (have ${gpu_mib:-?}), ~${need_heap} MiB of heap (have ${heap_mib}) + ~${need_off} MiB off-heap"
    return 0
  fi
  step "sweep-$t" "$want" "$want" "${jvm[@]}" bench --backend "$backend" --preset deepseek-v3 --tokens "$t" \
    --iters 20 --warmup 5 "${shape[@]}" --json "$out/bench-deepseek-v3-t$t.json"
}
sweep "${sizes[0]}" 30
sweep "${sizes[1]}" 35
sweep "${sizes[2]}" 100

# ---- the table
python3 - "$out" "$logs" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name, where=None):
    p = os.path.join(where or out, name)
    try:
        with open(p) as f: return json.load(f)
    except Exception: return None
rows = []
for name in sorted(os.listdir(out)):
    if name.startswith("bench-deepseek-v3") and name.endswith(".json"):
        j = load(name)
        if j: rows.append(j)
rows.sort(key=lambda j: j["config"]["tokens"])
seen = set()
if rows:
    c0 = rows[0]["config"]
    print("\nmoeyard %s, deepseek-v3 shape (%d ranks, hidden %d, %d experts, top-%d, %s) on %s" % (
        c0["backend"], c0["ranks"], c0["hidden"], c0["experts"], c0["topk"], c0["dtype"], rows[0]["device"]))
else:
    print("\nno bench results")
print("%8s %4s | %10s %10s %7s | %10s %10s %7s | %9s %7s %7s" % ("tokens", "ok", "disp fus", "disp unf", "f/u",
      "comb fus", "comb unf", "f/u", "copy GB/s", "d/copy", "d/copyW"))
for j in rows:
    c = j["config"]
    if c["tokens"] in seen: continue
    seen.add(c["tokens"])
    d, k = j["dispatch"], j["combine"]
    ofc = d["fused"]["gbps"] / j["copy_gbps"] if j["copy_gbps"] else 0
    wr = c.get("dispatch_written_bytes_per_rank", 0) / c["dispatch_bytes_per_rank"] if c.get("dispatch_bytes_per_rank") else 0
    print("%8d %4s | %8.1fus %8.1fus %6.2fx | %8.1fus %8.1fus %6.2fx | %9.1f %6.0f%% %6.0f%%" % (
        c["tokens"], "yes" if j["verified"] else "NO", d["fused"]["median_us"], d["unfused"]["median_us"],
        d["fused_over_unfused"], k["fused"]["median_us"], k["unfused"]["median_us"], k["fused_over_unfused"],
        j["copy_gbps"], 100 * ofc, 100 * ofc * wr))
if rows:
    print("(times: medians of CUDA events over all ranks; GB/s per rank = DeepEP bytes received per rank / time;"
          " d/copy = copy time / fused dispatch time, on DeepEP's counted bytes; d/copyW the same on the bytes the"
          " fused dispatch writes, one row per selection)")
for j in rows:
    u = j.get("untuned_kernels")
    if u:
        print("%8d tokens: untuned fused kernels %s: dispatch %.1fus (tuned %.2fx faster), combine %.1fus (tuned %.2fx faster)" % (
            j["config"]["tokens"], "verified" if u["verified"] else "NOT VERIFIED", u["dispatch_fused_median_us"],
            u["dispatch_fused_median_us"] / j["dispatch"]["fused"]["median_us"], u["combine_fused_median_us"],
            u["combine_fused_median_us"] / j["combine"]["fused"]["median_us"]))
p = load("bench-procs.json", sys.argv[2])
if p:
    c, d, k = p["config"], p["dispatch"], p["combine"]
    m = [j for j in rows if j["config"]["tokens"] == c["tokens"] and j["config"]["ranks"] == c["ranks"]]
    beside = " (virtual ranks: dispatch %.1fus, combine %.1fus)" % (
        m[0]["dispatch"]["fused"]["median_us"], m[0]["combine"]["fused"]["median_us"]) if m else ""
    print("rank processes (%s, %d x %d tokens): dispatch fused %.1fus (%.2fx unfused), combine fused %.1fus (%.2fx unfused),"
          " verified %s%s" % (p["device"], c["ranks"], c["tokens"], d["fused"]["median_us"], d["fused_over_unfused"],
          k["fused"]["median_us"], k["fused_over_unfused"], "yes" if p["verified"] else "NO", beside))
q = load("bench-procs-machines.json", sys.argv[2])
if q:
    c, d, k = q["config"], q["dispatch"], q["combine"]
    print("two pretend machines (%s, %d x %d tokens, %d nodes): dispatch fused %.1fus, combine fused %.1fus, verified %s" % (
          q["device"], c["ranks"], c["tokens"], c["nodes"], d["fused"]["median_us"], k["fused"]["median_us"],
          "yes" if q["verified"] else "NO"))
e = load("bench-esft-law.json")
if e:
    c, d, k = e["config"], e["dispatch"], e["combine"]
    print("measured routing (%s, %d ranks x %d tokens, hidden %d, %d experts top-%d): dispatch fused %.1fus (%.2fx unfused,"
          " %.0f%% of copy), combine fused %.1fus (%.2fx unfused), verified %s" % (
          c.get("routing"), c["ranks"], c["tokens"], c["hidden"], c["experts"], c["topk"], d["fused"]["median_us"],
          d["fused_over_unfused"], 100 * d["fused"]["gbps"] / e["copy_gbps"] if e["copy_gbps"] else 0,
          k["fused"]["median_us"], k["fused_over_unfused"], "yes" if e["verified"] else "NO"))
t = load("torch-baseline.json")
if t:
    print("torch (Megatron unfused, %d tokens): dispatch %.1fus, combine %.1fus; copy %.1f GB/s per rank" % (
        t["config"]["tokens"], t["dispatch"]["median_us"], t["combine"]["median_us"], t["copy_gbps"]))
    m = [j for j in rows if j["config"]["tokens"] == t["config"]["tokens"]]
    if m:
        print("moeyard fused vs torch: dispatch %.2fx, combine %.2fx (torch time / moeyard time)" % (
            t["dispatch"]["median_us"] / m[0]["dispatch"]["fused"]["median_us"],
            t["combine"]["median_us"] / m[0]["combine"]["fused"]["median_us"]))
PY
{
  echo
  grep -h "moeyard selftest --backend" "$logs/selftest.log" "$logs/sanitizer.log" "$logs/racecheck.log" 2>/dev/null
  grep -h "tests successful\|tests failed\|tests aborted" "$logs/gpu-tests.log" 2>/dev/null | sed 's/^/gpu-tests: /'
  for t in cuda-ipc nccl nccl-machines; do
    grep -h "tests successful\|tests failed\|tests skipped\|tests aborted" "$logs/$t.log" 2>/dev/null | sed "s/^/$t: /"
  done
  grep -h "^aborted: " "$logs/cuda-ipc.log" "$logs/nccl.log" "$logs/nccl-machines.log" 2>/dev/null | sort -u | head -4
  grep -h "^timing " "$logs/gpu-tests.log" 2>/dev/null | sed 's/^/gpu-tests: /'
  grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$logs/sanitizer.log" "$logs/racecheck.log" 2>/dev/null | sed 's/^=* *//'
  grep -h "timed calls had started" "$logs"/bench.log "$logs"/sweep-*.log 2>/dev/null
  grep -h "^combine candidate" "$logs"/bench.log 2>/dev/null
  for s in "${summary[@]}"; do echo "step $s"; done
  echo "total: $(( $(date +%s) - t_start ))s of the ${budget}s budget; exit $status"
  echo "files: $(cd "$out" && ls | tr '\n' ' ')logs.tgz"
} | tee -a "$out/summary.txt"
cp "$out/summary.txt" "$logs/" 2>/dev/null
tar czf "$out/logs.tgz" -C "$work" logs
exit $status
