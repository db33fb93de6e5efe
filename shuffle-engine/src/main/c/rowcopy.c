/*
 * moeyard host helper: row copies with non-temporal stores for the CPU backend.
 *
 * Why: a dispatch writes one row per selection into receive buffers far larger than the caches.
 * With ordinary stores every destination cache line is first read for ownership, so row-by-row
 * copies run at about half the speed of the bulk copy that serves as the roofline (which glibc
 * does with streaming stores). Java cannot issue streaming stores; this file does, and nothing
 * else. Rows whose destination is not 64-byte aligned, or whose length is not a multiple of 64,
 * fall back to memcpy; so does a CPU without AVX-512F or AVX.
 *
 * The sfence at the end orders the streaming stores before anything the caller does next (the
 * collective's barrier), so peers that pass the barrier see the rows.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

__attribute__((target("avx512f"))) static void copy_row_avx512(uint8_t *d, const uint8_t *s, int64_t n) {
  for (int64_t i = 0; i < n; i += 64) {
    __m512i v = _mm512_loadu_si512((const void *)(s + i));
    _mm512_stream_si512((void *)(d + i), v);
  }
}

__attribute__((target("avx"))) static void copy_row_avx(uint8_t *d, const uint8_t *s, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(s + i));
    _mm256_stream_si256((__m256i *)(d + i), v);
  }
}

/* 2 = AVX-512F, 1 = AVX, 0 = plain memcpy; decided once. */
static int level = -1;

int moeyard_rowcopy_level(void) {
  if (level < 0) {
    __builtin_cpu_init();
    level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;
  }
  return level;
}

/* Copies n rows of row_bytes: dst + dst_off[i] <- src + src_off[i]. Offsets are checked by the caller. */
void moeyard_copy_rows(uint8_t *dst, const int64_t *dst_off, const uint8_t *src, const int64_t *src_off,
                       int32_t n, int64_t row_bytes) {
  int lvl = moeyard_rowcopy_level();
  int streamable = lvl > 0 && (row_bytes & 63) == 0;
  for (int32_t i = 0; i < n; i++) {
    uint8_t *d = dst + dst_off[i];
    const uint8_t *s = src + src_off[i];
    if (streamable && (((uintptr_t)d) & 63) == 0) {
      if (lvl == 2) copy_row_avx512(d, s, row_bytes);
      else copy_row_avx(d, s, row_bytes);
    } else {
      memcpy(d, s, (size_t)row_bytes);
    }
  }
  if (lvl > 0) _mm_sfence();
}

/* One block: dst + dst_off <- src + src_off, bytes long (streaming where aligned, as above). The
   offsets come as arguments so that the caller need not make a slice of each segment per copy. */
void moeyard_copy_at(uint8_t *dst, int64_t dst_off, const uint8_t *src, int64_t src_off, int64_t bytes) {
  moeyard_copy_rows(dst, &dst_off, src, &src_off, 1, bytes);
}

