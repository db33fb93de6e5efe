#!/usr/bin/env bash
# Builds the moeyard CUDA library (kernels + JNI glue) with nvcc into the jar's resource folder:
#   target/classes/native/linux-x86_64/libmoeyard_cuda.so
# Called by Maven (profile "cuda", phase compile). Without nvcc it prints why and exits 0: the build
# passes and the CUDA backend reports itself unavailable ("no native library in the jar").
#
# Environment:
#   MOEYARD_NVCC      nvcc to use (else $CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, nvcc on PATH)
#   MOEYARD_GENCODE   gencode flags (default: sm_90 machine code + compute_90 PTX)
#   MOEYARD_VERSION   version string baked into the library
#   JAVA_HOME         JDK whose include/ has jni.h
# Incremental: an object is rebuilt only when its source or a header is newer.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/src/main/cuda"
out="${1:-$here/target/classes/native/linux-x86_64}"
obj="${2:-$here/target/native-obj}"
lib="$out/libmoeyard_cuda.so"
say() { echo "[moeyard-native] $*"; }

nvcc="${MOEYARD_NVCC:-}"
if [[ -z "$nvcc" ]]; then
  for c in "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc "$(command -v nvcc 2>/dev/null || true)"; do
    if [[ -n "$c" && -x "$c" ]]; then nvcc="$c"; break; fi
  done
fi
if [[ -z "$nvcc" || ! -x "$nvcc" ]]; then
  say "nvcc not found (set MOEYARD_NVCC or -Dmoeyard.nvcc=PATH): building without the CUDA library;"
  say "the cuda backend will report 'CUDA backend unavailable: no native library in the jar'."
  rm -f "$lib"
  exit 0
fi
jhome="${JAVA_HOME:-}"
if [[ -z "$jhome" ]] && command -v javac >/dev/null 2>&1; then
  jhome=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
fi
if [[ -z "$jhome" || ! -f "$jhome/include/jni.h" ]]; then
  say "jni.h not found under JAVA_HOME='$jhome': cannot build the CUDA library"
  exit 1
fi

gencode="${MOEYARD_GENCODE:--gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90}"
version="${MOEYARD_VERSION:-dev}"
# -fmad=false: the combine's float arithmetic must match the CPU backend bit for bit (the kernels
# also use __fmul_rn / __fadd_rn explicitly; this keeps any other float expression uncontracted).
common=(-O3 -std=c++17 -Xcompiler -fPIC,-ffp-contract=off -fmad=false -DMOEYARD_VERSION="\"$version\"")
mkdir -p "$out" "$obj"

newest_header=0
for h in "$src"/*.cuh; do
  t=$(stat -c %Y "$h"); (( t > newest_header )) && newest_header=$t
done
stamp="$obj/flags.txt"
flags="$nvcc ${common[*]} $gencode"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$flags" ]]; then rm -f "$obj"/*.o; echo "$flags" > "$stamp"; fi

# Objects whose source is gone would still be linked: drop them.
for o in "$obj"/*.o; do
  [[ -e "$o" ]] || continue
  b=$(basename "${o%.o}")
  if [[ ! -e "$src/$b.cu" && ! -e "$src/$b.cpp" ]]; then rm -f "$o" "$lib"; fi
done

built=0
for f in "$src"/*.cu "$src"/*.cpp; do
  [[ -e "$f" ]] || continue
  o="$obj/$(basename "${f%.*}").o"
  if [[ -f "$o" ]]; then
    to=$(stat -c %Y "$o"); tf=$(stat -c %Y "$f")
    if (( to >= tf && to >= newest_header )); then continue; fi
  fi
  say "nvcc $(basename "$f")"
  if [[ "$f" == *.cpp ]]; then
    "$nvcc" "${common[@]}" -I"$jhome/include" -I"$jhome/include/linux" -c "$f" -o "$o"
  else
    # shellcheck disable=SC2086
    "$nvcc" "${common[@]}" $gencode -c "$f" -o "$o"
  fi
  built=1
done
if (( built == 1 )) || [[ ! -f "$lib" ]]; then
  say "link $lib"
  # shellcheck disable=SC2086
  "$nvcc" -shared -cudart static $gencode -o "$lib" "$obj"/*.o
fi
say "ok: $lib ($("$nvcc" --version | tail -1))"
