/*
 * moeyard host helper: the BF16 weighted row sums of combine, for the CPU backend.
 *
 * Why native: the sums are bound by arithmetic, not memory (measured on the 2-core AVX-512 VM:
 * the fused expert side's sums ran as fast on rows already in L1 as on rows from DRAM), and
 * most of that arithmetic is the rounding to BF16. The Vector API has no BF16 conversion, so
 * Java rounds with ~9 integer operations per vector; AVX512_BF16's VCVTNE2PS2BF16 rounds two
 * vectors in one. Storing from registers with streaming stores also lets a partial go straight
 * to its home rank without a cache-resident stage (Java cannot issue streaming stores). One call
 * computes a whole batch of sums (a chunk of pairs, every token of a rank): measured, a call per
 * sum cost as much as the sums themselves.
 *
 * Bits: identical to combine.RowMath's definition. Products and sums are separate IEEE
 * operations (this file must be compiled with -ffp-contract=off, or GCC fuses them into FMAs).
 * Rounding is Numerics.floatToBf16's integer formula; VCVTNE2PS2BF16 computes the same except
 * for denormal inputs, which it flushes to zero, so a vector holding a denormal is rounded with
 * the integer formula instead.
 *
 * Channels are processed 32 at a time as one 512-bit load of 32 BF16 values: the low halves of
 * the 16 32-bit lanes (even channels) and the high halves (odd channels) become two float
 * vectors by a shift and a mask, with no lane-crossing conversion.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline uint16_t bf16_round(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((b >> 16) | 0x40); /* NaN: quiet, top bits kept */
  return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

static inline float bf16_float(uint16_t v) {
  uint32_t b = (uint32_t)v << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

#define AVX512 __attribute__((target("avx512f,avx512bw")))
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* bf16_round lane by lane, the 16 result bits in the low half of each 32-bit lane. */
AVX512 static inline __m512i bf16_bits(__m512 v) {
  __m512i bits = _mm512_castps_si512(v);
  __m512i high = _mm512_srli_epi32(bits, 16);
  __m512i bias = _mm512_add_epi32(_mm512_and_si512(high, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7FFF));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
}

/* Lanes holding a denormal (nonzero, exponent 0): VCVTNE2PS2BF16 would flush them. */
AVX512 static inline __mmask16 denormal(__m512 v) {
  __m512i mag = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
  return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(mag, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x007FFFFF));
}

/* Even channels in a0, odd in a1 -> 32 BF16 values in channel order. */
AVX512 static inline __m512i pack_int(__m512 a0, __m512 a1) {
  return _mm512_or_si512(bf16_bits(a0), _mm512_slli_epi32(bf16_bits(a1), 16));
}

AVX512BF16 static inline __m512i pack_bf16(__m512 a0, __m512 a1) {
  if (__builtin_expect((denormal(a0) | denormal(a1)) != 0, 0)) return pack_int(a0, a1);
  /* words 0..15 = a0's lanes, 16..31 = a1's; interleave them back into channel order */
  __m512i packed = (__m512i)_mm512_cvtne2ps_pbh(a1, a0);
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, packed);
}

/* float(bf16(p)) lane by lane: a partial as if stored and loaded back. */
AVX512 static inline __m512 round_trip_int(__m512 p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(p), 16));
}

AVX512BF16 static inline __m512 round_trip_bf16(__m512 p) {
  if (__builtin_expect(denormal(p) != 0, 0)) return round_trip_int(p);
  __m256i h = (__m256i)_mm512_cvtneps_pbh(p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/*
 * The kernel, instantiated per rounding flavour: `outputs` sums, output j into dst + j * stride.
 * Per channel of one output:
 *   a = 0; for each group g of the output: p = 0; for each term i of g: p = p + w[i] * y_i
 *          (p = p + y_i when w is NULL); a = two_level ? a + float(bf16(p)) : p
 *   dst = bf16(a)
 * Single-level (out_end NULL): output j is group j, rounded once. Rounding twice is not the
 * same even for one group: a tiny negative p rounds to -0, and 0 + -0 is +0. An output without
 * terms is zeros.
 */
#define SUM_KERNEL(NAME, TARGET, PACK, ROUND_TRIP)                                                             \
  TARGET static void NAME(const uint8_t *src, const int64_t *off, const float *w, const int32_t *group_end,   \
                          const int32_t *out_end, int32_t outputs, int32_t h, uint8_t *dst, int64_t stride,   \
                          int32_t stream) {                                                                   \
    const __m512i odd = _mm512_set1_epi32((int)0xFFFF0000u);                                                  \
    int32_t two_level = out_end != NULL;                                                                      \
    int32_t g_first = 0;                                                                                      \
    for (int32_t j = 0; j < outputs; j++) {                                                                   \
      int32_t g_last = two_level ? out_end[j] : j + 1;                                                        \
      int32_t t_first = g_first == 0 ? 0 : group_end[g_first - 1];                                            \
      uint8_t *d = dst + j * stride;                                                                          \
      int nt = stream && (((uintptr_t)d) & 63) == 0;                                                          \
      int64_t c = 0;                                                                                          \
      for (; c + 32 <= h; c += 32) {                                                                          \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                                            \
        int32_t i = t_first;                                                                                  \
        for (int32_t g = g_first; g < g_last; g++) {                                                          \
          __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();                                          \
          for (; i < group_end[g]; i++) {                                                                     \
            __m512i v = _mm512_loadu_si512((const void *)(src + off[i] + 2 * c));                             \
            __m512 y0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));                                        \
            __m512 y1 = _mm512_castsi512_ps(_mm512_and_si512(v, odd));                                        \
            if (w) {                                                                                          \
              __m512 wv = _mm512_set1_ps(w[i]);                                                               \
              y0 = _mm512_mul_ps(y0, wv);                                                                     \
              y1 = _mm512_mul_ps(y1, wv);                                                                     \
            }                                                                                                 \
            p0 = _mm512_add_ps(p0, y0);                                                                       \
            p1 = _mm512_add_ps(p1, y1);                                                                       \
          }                                                                                                   \
          if (two_level) {                                                                                    \
            a0 = _mm512_add_ps(a0, ROUND_TRIP(p0));                                                           \
            a1 = _mm512_add_ps(a1, ROUND_TRIP(p1));                                                           \
          } else {                                                                                            \
            a0 = p0;                                                                                          \
            a1 = p1;                                                                                          \
          }                                                                                                   \
        }                                                                                                     \
        __m512i out = PACK(a0, a1);                                                                           \
        if (nt) _mm512_stream_si512((void *)(d + 2 * c), out);                                                \
        else _mm512_storeu_si512((void *)(d + 2 * c), out);                                                   \
      }                                                                                                       \
      for (; c < h; c++) {                                                                                    \
        float a = 0.0f;                                                                                       \
        int32_t i = t_first;                                                                                  \
        for (int32_t g = g_first; g < g_last; g++) {                                                          \
          float p = 0.0f;                                                                                     \
          for (; i < group_end[g]; i++) {                                                                     \
            uint16_t bits;                                                                                    \
            memcpy(&bits, src + off[i] + 2 * c, 2);                                                           \
            float y = bf16_float(bits);                                                                       \
            p = p + (w ? w[i] * y : y);                                                                       \
          }                                                                                                   \
          a = two_level ? a + bf16_float(bf16_round(p)) : p;                                                  \
        }                                                                                                     \
        uint16_t v = bf16_round(a);                                                                           \
        memcpy(d + 2 * c, &v, 2);                                                                             \
      }                                                                                                       \
      g_first = g_last;                                                                                       \
    }                                                                                                         \
    if (stream) _mm_sfence(); /* peers read these rows after the caller's next barrier */                    \
  }

SUM_KERNEL(sum_bf16_int, AVX512, pack_int, round_trip_int)
SUM_KERNEL(sum_bf16_cvt, AVX512BF16, pack_bf16, round_trip_bf16)

/* 2 = AVX512_BF16 rounding, 1 = AVX-512 integer rounding, 0 = not available (Java sums); decided once. */
static int sum_level = -1;

int moeyard_rowsum_level(void) {
  if (sum_level < 0) {
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    sum_level = !avx512 ? 0 : __builtin_cpu_supports("avx512bf16") ? 2 : 1;
  }
  return sum_level;
}

/*
 * Computes `outputs` sums (above) of the BF16 rows at src + off[i] into dst + dst_off + j * stride
 * (h BF16 values each). Terms are grouped by group_end (cumulative term counts, one entry per
 * group); out_end (cumulative group counts, one per output) makes the sums two-level, NULL makes
 * output j the single-level sum of group j. w may be NULL (unweighted). stream != 0 writes with
 * streaming stores where a row is 64-byte aligned and fences them before returning. Indices,
 * offsets and lengths are checked by the caller. level picks the rounding, 2 (AVX512_BF16) or 1
 * (integer): at least 1 and at most moeyard_rowsum_level() (the caller passes that; tests run
 * both).
 */
void moeyard_sum_bf16(int32_t level, const uint8_t *src, const int64_t *off, const float *w, const int32_t *group_end,
                      const int32_t *out_end, int32_t outputs, int32_t h, uint8_t *dst, int64_t dst_off,
                      int64_t stride, int32_t stream) {
  if (level == 2) sum_bf16_cvt(src, off, w, group_end, out_end, outputs, h, dst + dst_off, stride, stream);
  else sum_bf16_int(src, off, w, group_end, out_end, outputs, h, dst + dst_off, stride, stream);
}
