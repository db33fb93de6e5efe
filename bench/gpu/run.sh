#!/usr/bin/env bash
# Run on the GPU machine, from the repository root, after bench/gpu/bundle.sh on the CPU machine
# (it fills the ignored .gpu/ folder: a Java 25 runtime and the bench jars):
#
#   bash bench/gpu/run.sh
#
# Steps, each with its own timeout, all inside a total budget (MOEYARD_GPU_BUDGET_S, default 360 s):
#   1. moeyard selftest --backend cuda       random configs, cuda vs the cpu fused path, bit for bit
#   2. moeyard bench --backend cuda --preset deepseek-v3 (4096 tokens/rank)  -> bench-deepseek-v3.json
#   3. token sweep at the deepseek-v3 shape: 128, 512 tokens per rank (4096 is step 2)
#   4. torch_baseline.py: Megatron's unfused path in PyTorch on step 2's very routing (--routing) -> torch-baseline.json
#   5. the native module's JUnit tests (GpuTestMain --require-gpu: CudaBackendGpuTest and the host tests)
#   6. compute-sanitizer --tool memcheck on a small selftest (--cases 5), if compute-sanitizer exists
#   7. the sweep's 16384 tokens per rank, skipped when its estimated GPU or host memory does not fit
# then a short table. Logs and JSON go to $OUT when set (else a fresh /tmp folder).
# Exit: 0 all steps passed; 3 the CUDA backend is unavailable (the reason is printed); 1 otherwise.
# MOEYARD_GPU_DRY_RUN=1 runs the same steps on the cpu backend at a tiny shape (to test this
# script without a GPU; the torch step then fails without torch).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${OUT:-}
[ -n "$out" ] || out=$(mktemp -d /tmp/moeyard-gpu.XXXXXX)
mkdir -p "$out"
budget=${MOEYARD_GPU_BUDGET_S:-360}
deadline=$(( $(date +%s) + budget ))
status=0
summary=()

log() { echo "run.sh: $*" | tee -a "$out/run.log"; }

# seconds left for a step that wants $1 seconds: min(wanted, left - 15), or 0 when too little is left
allow() {
  local want=$1 left=$(( deadline - $(date +%s) - 15 ))
  if [ "$left" -lt 20 ]; then echo 0; elif [ "$left" -lt "$want" ]; then echo "$left"; else echo "$want"; fi
}

# step NAME WANT_SECONDS CMD...: runs CMD with a timeout, output to $out/NAME.log (and the terminal)
step() {
  local name=$1 want=$2; shift 2
  local t; t=$(allow "$want")
  if [ "$t" -eq 0 ]; then
    log "$name: skipped (time budget spent)"; summary+=("$name: skipped (budget)"); status=1; return 124
  fi
  log "$name: $* (timeout ${t}s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@" </dev/null 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) summary+=("$name: ok (${dt}s)") ;;
    124|137) summary+=("$name: TIMED OUT after ${dt}s"); status=1 ;;
    *) summary+=("$name: FAILED rc=$rc (${dt}s)"); status=1 ;;
  esac
  log "$name: rc=$rc in ${dt}s"
  return $rc
}

# ---- the bundle and the runtime
if [ ! -f .gpu/jre.tgz ] || [ ! -d .gpu/lib ]; then
  echo "run.sh: no .gpu/ bundle here: run bash bench/gpu/bundle.sh on the CPU machine first" >&2
  exit 2
fi
jre_dir=$(mktemp -d /tmp/moeyard-jre.XXXXXX)
trap 'rm -rf "$jre_dir"' EXIT
tar xzf .gpu/jre.tgz -C "$jre_dir" || { echo "run.sh: cannot unpack .gpu/jre.tgz" >&2; exit 2; }
JAVA=$jre_dir/jre/bin/java
log "bundle commit: $(cat .gpu/commit 2>/dev/null | tr '\n' ' '); out: $out"

# NCCL as the device README says (the cuda backend does not need it; the JVM side may)
nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
if [ -z "$nccl" ] || [ ! -e "$nccl/libnccl.so.2" ]; then
  nccl=$(dirname "$(timeout 30 find / -xdev -name 'libnccl.so.2' -path '*nvidia*' 2>/dev/null | head -1)" 2>/dev/null)
fi
if [ -n "$nccl" ] && [ "$nccl" != . ]; then
  export LD_LIBRARY_PATH=$nccl:${LD_LIBRARY_PATH:-}
  log "libnccl: $nccl"
else
  log "libnccl: not found (the cuda backend does not need it)"
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$out/gpu.txt" | sed 's/^/run.sh: gpu: /'
gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
host_mib=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
heap_mib=$(( host_mib * 6 / 10 ))
jvm=("$JAVA" "-Xmx${heap_mib}m" --enable-native-access=ALL-UNNAMED -Dorg.bytedeco.javacpp.cachedir=/tmp/jcache
     -Djava.io.tmpdir=/tmp -cp ".gpu/lib/*" io.moeyard.bench.cli.Moeyard)

backend=cuda
shape=()
sizes=(128 512 16384)
if [ "${MOEYARD_GPU_DRY_RUN:-0}" = 1 ]; then
  backend=cpu
  shape=(--hidden 256)
  sizes=(8 16 64)
  log "dry run: cpu backend, hidden 256, tokens ${sizes[*]}"
fi

# ---- 1. selftest (stop here when the backend is unavailable)
step selftest 90 "${jvm[@]}" selftest --backend "$backend" --cases 200 --seed 1
rc=$?
if [ $rc -eq 3 ]; then
  echo "run.sh: $(grep -m1 'CUDA backend unavailable' "$out/selftest.log")" >&2
  echo "run.sh: stopping: the cuda backend cannot run here" >&2
  exit 3
fi

# ---- 2. the deepseek-v3 preset, 4096 tokens per rank
main_tokens=()
[ "$backend" = cpu ] && main_tokens=(--tokens 32)
step bench-deepseek-v3 150 "${jvm[@]}" bench --backend "$backend" --preset deepseek-v3 "${main_tokens[@]}" "${shape[@]}" \
  --json "$out/bench-deepseek-v3.json" --routing-out "$out/routing-deepseek-v3.npy"

# ---- 3. token sweep at the deepseek-v3 shape (8 ranks, hidden 7168, 256 experts, top-8, bf16);
# 4096 is step 2. Estimates per size, from rows = R*T*K received rows of 14336 B: GPU peak ~7 x rows
# (copy roofline, recv + perm + staging, expert outputs + their two unfused copies, x), heap ~2.2 x
# rows (expert outputs + one download), off-heap ~1.2 x rows (the cpu reference's receive rows).
sweep() {
  local t=$1 want=$2
  local rows_mib=$(( 8 * t * 8 * 14336 / 1048576 ))
  local need_gpu=$(( rows_mib * 7 )) need_heap=$(( rows_mib * 22 / 10 )) need_off=$(( rows_mib * 12 / 10 ))
  if { [ -n "$gpu_mib" ] && [ "$need_gpu" -gt $(( gpu_mib * 9 / 10 )) ]; } \
      || [ "$need_heap" -gt $(( heap_mib * 9 / 10 )) ] || [ $(( need_heap + need_off )) -gt $(( host_mib * 8 / 10 )) ]; then
    log "sweep-$t: skipped: needs ~${need_gpu} MiB of GPU memory (have ${gpu_mib:-?}), ~${need_heap} MiB of heap (have ${heap_mib}) + ~${need_off} MiB off-heap"
    summary+=("sweep-$t: skipped (memory)")
    return 0
  fi
  step "sweep-$t" "$want" "${jvm[@]}" bench --backend "$backend" --preset deepseek-v3 --tokens "$t" \
    --iters 10 --warmup 3 "${shape[@]}" --json "$out/bench-deepseek-v3-t$t.json"
}
sweep "${sizes[0]}" 60
sweep "${sizes[1]}" 60

# ---- 4. the PyTorch peer baseline (Megatron's unfused path), the same shape as step 2
# (the very routing step 2 ran, when it wrote it; the rows and weights are drawn there)
routing_arg=()
[ -f "$out/routing-deepseek-v3.npy" ] && routing_arg=(--routing "$out/routing-deepseek-v3.npy")
step torch-baseline 120 python3 bench/gpu/torch_baseline.py "${routing_arg[@]}" --json "$out/torch-baseline.json"

# ---- 5. the native module's JUnit tests (CudaBackendGpuTest & co.) through GpuTestMain
if [ -d .gpu/native-test/test-classes ]; then
  step gpu-tests 120 "$JAVA" "-Xmx${heap_mib}m" --enable-native-access=ALL-UNNAMED -Djava.io.tmpdir=/tmp \
    -cp ".gpu/native-test/test-classes:.gpu/native-test/classes:.gpu/native-test/lib/*:.gpu/lib/*" \
    io.moeyard.cuda.GpuTestMain $([ "$backend" = cuda ] && echo --require-gpu)
fi

# ---- 6. memcheck on a small selftest
# gVisor machines (kernel 4.4.0) refuse compute-sanitizer ("Device not supported", error 999):
# skipped there rather than counted as a failure of our code. CUDA_LAUNCH_BLOCKING makes a fault
# surface at the launch of the kernel that caused it.
if [ "$(uname -r)" = 4.4.0 ]; then
  log "sanitizer: skipped on gVisor (kernel 4.4.0 refuses compute-sanitizer; ask for kind nvidia-h100-x1 / Firecracker)"
  summary+=("sanitizer: skipped (gVisor)")
elif command -v compute-sanitizer >/dev/null; then
  step sanitizer 120 env CUDA_LAUNCH_BLOCKING=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 \
    "${jvm[@]}" selftest --backend "$backend" --cases 5 --max-tokens 16 --seed 2
else
  log "sanitizer: compute-sanitizer not found, skipped"; summary+=("sanitizer: not found")
fi

# ---- 7. the largest sweep point last: it is the one most likely to run out of time or memory
sweep "${sizes[2]}" 170

# ---- the table
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
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
print("%8s %4s | %10s %10s %7s | %10s %10s %7s | %9s %7s" % ("tokens", "ok", "disp fus", "disp unf", "f/u",
      "comb fus", "comb unf", "f/u", "copy GB/s", "d/copy"))
for j in rows:
    c = j["config"]
    if c["tokens"] in seen: continue
    seen.add(c["tokens"])
    d, k = j["dispatch"], j["combine"]
    print("%8d %4s | %8.1fus %8.1fus %6.2fx | %8.1fus %8.1fus %6.2fx | %9.1f %6.0f%%" % (
        c["tokens"], "yes" if j["verified"] else "NO", d["fused"]["median_us"], d["unfused"]["median_us"],
        d["fused_over_unfused"], k["fused"]["median_us"], k["unfused"]["median_us"], k["fused_over_unfused"],
        j["copy_gbps"], 100 * d["fused"]["gbps"] / j["copy_gbps"] if j["copy_gbps"] else 0))
if rows:
    print("(times: medians of CUDA events over all ranks; GB/s per rank = DeepEP bytes received per rank / time;"
          " d/copy = copy time / fused dispatch time)")
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
  grep -h "moeyard selftest --backend" "$out/selftest.log" "$out/sanitizer.log" 2>/dev/null
  grep -h "tests successful\|tests failed\|tests aborted" "$out/gpu-tests.log" 2>/dev/null | sed 's/^/gpu-tests: /' 
  grep -h "ERROR SUMMARY" "$out/sanitizer.log" 2>/dev/null
  for s in "${summary[@]}"; do echo "step $s"; done
  echo "logs and JSON: $out"
} | tee -a "$out/summary.txt"
exit $status
