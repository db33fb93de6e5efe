#!/usr/bin/env bash
# Builds libmoeyard_host.so (the CPU backend's native helpers: streaming row copies, rowcopy.c;
# combine's BF16 sums, rowsum.c) into $1. Without a C compiler it says so and exits 0: the CPU
# backend then copies and sums in Java (same bytes, slower).
set -euo pipefail
out="$1"
cc="${MOEYARD_CC:-${CC:-cc}}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "moeyard: no C compiler ($cc): building without the host helper (Java copies and sums are used)"
  rm -f "$out/libmoeyard_host.so"
  exit 0
fi
dir="$(dirname "$0")/src/main/c"
srcs=("$dir/rowcopy.c" "$dir/rowsum.c")
mkdir -p "$out"
fresh=1
for s in "${srcs[@]}" "$0"; do [ "$out/libmoeyard_host.so" -nt "$s" ] || fresh=0; done
if [ "$fresh" = 1 ]; then exit 0; fi
# -ffp-contract=off: combine's sums must stay a multiply then an add (RowMath's bits), never an FMA
if ! "$cc" -O2 -ffp-contract=off -shared -fPIC -o "$out/libmoeyard_host.so" "${srcs[@]}"; then
  # a compiler without AVX512_BF16 intrinsics (GCC < 10): keep the copies, sum in Java
  echo "moeyard: $cc cannot build rowsum.c: building the host helper with row copies only (Java sums are used)"
  "$cc" -O2 -shared -fPIC -o "$out/libmoeyard_host.so" "$dir/rowcopy.c"
fi
