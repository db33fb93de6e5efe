#!/usr/bin/env bash
# Builds libmoeyard_host.so (non-temporal row copies for the CPU backend) into $1.
# Without a C compiler it says so and exits 0: RowCopy then falls back to Java copies.
set -euo pipefail
out="$1"
cc="${MOEYARD_CC:-${CC:-cc}}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "moeyard: no C compiler ($cc): building without the host row-copy helper (Java copies are used)"
  rm -f "$out/libmoeyard_host.so"
  exit 0
fi
src="$(dirname "$0")/src/main/c/rowcopy.c"
mkdir -p "$out"
if [ "$out/libmoeyard_host.so" -nt "$src" ]; then exit 0; fi
"$cc" -O2 -shared -fPIC -o "$out/libmoeyard_host.so" "$src"
