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
 * One kernel, three instruction sets (levels, best first): 3 = AVX-512 with AVX512_BF16
 * rounding, 2 = AVX-512 with integer rounding, 1 = AVX2 with integer rounding. A vector load of
 * BF16 values (32 for AVX-512, 16 for AVX2) becomes two float vectors, the low halves of the
 * 32-bit lanes (even channels) by a shift and the high halves (odd channels) by a mask: no
 * lane-crossing conversion.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
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

#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx512f,avx512bw")))
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* ---- AVX-512: 32 channels per step ---- */

typedef __m512 v512f;
typedef __m512i v512i;
#define V512_STEP 32
#define V512_ALIGN 63

AVX512 static inline v512i v512_load(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
AVX512 static inline v512f v512_even(v512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
AVX512 static inline v512f v512_odd(v512i v) {
  return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}
AVX512 static inline v512f v512_zero(void) { return _mm512_setzero_ps(); }
AVX512 static inline v512f v512_set1(float w) { return _mm512_set1_ps(w); }
AVX512 static inline v512f v512_mul(v512f a, v512f b) { return _mm512_mul_ps(a, b); }
AVX512 static inline v512f v512_add(v512f a, v512f b) { return _mm512_add_ps(a, b); }
AVX512 static inline void v512_store(uint8_t *d, v512i v, int nt) {
  if (nt) _mm512_stream_si512((void *)d, v);
  else _mm512_storeu_si512((void *)d, v);
}

/* bf16_round lane by lane, the 16 result bits in the low half of each 32-bit lane. */
AVX512 static inline v512i v512_bf16_bits(v512f v) {
  __m512i bits = _mm512_castps_si512(v);
  __m512i high = _mm512_srli_epi32(bits, 16);
  __m512i bias = _mm512_add_epi32(_mm512_and_si512(high, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7FFF));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
}

/* Even channels in a0, odd in a1 -> BF16 values in channel order. */
AVX512 static inline v512i v512_pack(v512f a0, v512f a1) {
  return _mm512_or_si512(v512_bf16_bits(a0), _mm512_slli_epi32(v512_bf16_bits(a1), 16));
}

/* float(bf16(p)) lane by lane: a partial as if stored and loaded back. */
AVX512 static inline v512f v512_round_trip(v512f p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(v512_bf16_bits(p), 16));
}

/* Lanes holding a denormal (nonzero, exponent 0): VCVTNE2PS2BF16 would flush them. */
AVX512 static inline __mmask16 v512_denormal(v512f v) {
  __m512i mag = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
  return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(mag, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x007FFFFF));
}

AVX512BF16 static inline v512i v512_pack_cvt(v512f a0, v512f a1) {
  if (__builtin_expect((v512_denormal(a0) | v512_denormal(a1)) != 0, 0)) return v512_pack(a0, a1);
  /* words 0..15 = a0's lanes, 16..31 = a1's; interleave them back into channel order */
  __m512i packed = (__m512i)_mm512_cvtne2ps_pbh(a1, a0);
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, packed);
}

AVX512BF16 static inline v512f v512_round_trip_cvt(v512f p) {
  if (__builtin_expect(v512_denormal(p) != 0, 0)) return v512_round_trip(p);
  __m256i h = (__m256i)_mm512_cvtneps_pbh(p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* ---- AVX2: 16 channels per step ---- */

typedef __m256 v256f;
typedef __m256i v256i;
#define V256_STEP 16
#define V256_ALIGN 31

AVX2 static inline v256i v256_load(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
AVX2 static inline v256f v256_even(v256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
AVX2 static inline v256f v256_odd(v256i v) {
  return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
}
AVX2 static inline v256f v256_zero(void) { return _mm256_setzero_ps(); }
AVX2 static inline v256f v256_set1(float w) { return _mm256_set1_ps(w); }
AVX2 static inline v256f v256_mul(v256f a, v256f b) { return _mm256_mul_ps(a, b); }
AVX2 static inline v256f v256_add(v256f a, v256f b) { return _mm256_add_ps(a, b); }
AVX2 static inline void v256_store(uint8_t *d, v256i v, int nt) {
  if (nt) _mm256_stream_si256((__m256i *)d, v);
  else _mm256_storeu_si256((__m256i *)d, v);
}

AVX2 static inline v256i v256_bf16_bits(v256f v) {
  __m256i bits = _mm256_castps_si256(v);
  __m256i high = _mm256_srli_epi32(bits, 16);
  __m256i bias = _mm256_add_epi32(_mm256_and_si256(high, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7FFF));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
  /* signed compare is right here: the magnitude is at most 0x7FFFFFFF */
  __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
  return _mm256_blendv_epi8(r, _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
}

AVX2 static inline v256i v256_pack(v256f a0, v256f a1) {
  return _mm256_or_si256(v256_bf16_bits(a0), _mm256_slli_epi32(v256_bf16_bits(a1), 16));
}

AVX2 static inline v256f v256_round_trip(v256f p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(v256_bf16_bits(p), 16));
}

/*
 * The kernel, per instruction set V (v512 / v256) and rounding (PACK, ROUND_TRIP): `outputs`
 * sums, output j into dst + j * stride. Per channel of one output:
 *   a = 0; for each group g of the output: p = 0; for each term i of g: p = p + w[i] * y_i
 *          (p = p + y_i when w is NULL); a = two_level ? a + float(bf16(p)) : p
 *   dst = bf16(a)
 * Single-level (out_end NULL): output j is group j, rounded once. Rounding twice is not the
 * same even for one group: a tiny negative p rounds to -0, and 0 + -0 is +0. An output without
 * terms is zeros.
 */
#define SUM_KERNEL(NAME, TARGET, V, STEP, ALIGN, PACK, ROUND_TRIP)                                           \
  TARGET static void NAME(const uint8_t *src, const int64_t *off, const float *w, const int32_t *group_end, \
                          const int32_t *out_end, int32_t outputs, int32_t h, uint8_t *dst, int64_t stride, \
                          int32_t stream) {                                                                 \
    int32_t two_level = out_end != NULL;                                                                    \
    int32_t g_first = 0;                                                                                    \
    for (int32_t j = 0; j < outputs; j++) {                                                                 \
      int32_t g_last = two_level ? out_end[j] : j + 1;                                                      \
      int32_t t_first = g_first == 0 ? 0 : group_end[g_first - 1];                                          \
      uint8_t *d = dst + j * stride;                                                                        \
      int nt = stream && (((uintptr_t)d) & ALIGN) == 0;                                                     \
      int64_t c = 0;                                                                                        \
      for (; c + STEP <= h; c += STEP) {                                                                    \
        V##f a0 = V##_zero(), a1 = V##_zero();                                                              \
        int32_t i = t_first;                                                                                \
        for (int32_t g = g_first; g < g_last; g++) {                                                        \
          V##f p0 = V##_zero(), p1 = V##_zero();                                                            \
          for (; i < group_end[g]; i++) {                                                                   \
            V##i v = V##_load(src + off[i] + 2 * c);                                                        \
            V##f y0 = V##_even(v), y1 = V##_odd(v);                                                         \
            if (w) {                                                                                        \
              V##f wv = V##_set1(w[i]);                                                                     \
              y0 = V##_mul(y0, wv);                                                                         \
              y1 = V##_mul(y1, wv);                                                                         \
            }                                                                                               \
            p0 = V##_add(p0, y0);                                                                           \
            p1 = V##_add(p1, y1);                                                                           \
          }                                                                                                 \
          if (two_level) {                                                                                  \
            a0 = V##_add(a0, ROUND_TRIP(p0));                                                               \
            a1 = V##_add(a1, ROUND_TRIP(p1));                                                               \
          } else {                                                                                          \
            a0 = p0;                                                                                        \
            a1 = p1;                                                                                        \
          }                                                                                                 \
        }                                                                                                   \
        V##_store(d + 2 * c, PACK(a0, a1), nt);                                                             \
      }                                                                                                     \
      for (; c < h; c++) {                                                                                  \
        float a = 0.0f;                                                                                     \
        int32_t i = t_first;                                                                                \
        for (int32_t g = g_first; g < g_last; g++) {                                                        \
          float p = 0.0f;                                                                                   \
          for (; i < group_end[g]; i++) {                                                                   \
            uint16_t bits;                                                                                  \
            memcpy(&bits, src + off[i] + 2 * c, 2);                                                         \
            float y = bf16_float(bits);                                                                     \
            p = p + (w ? w[i] * y : y);                                                                     \
          }                                                                                                 \
          a = two_level ? a + bf16_float(bf16_round(p)) : p;                                                \
        }                                                                                                   \
        uint16_t v = bf16_round(a);                                                                         \
        memcpy(d + 2 * c, &v, 2);                                                                           \
      }                                                                                                     \
      g_first = g_last;                                                                                     \
    }                                                                                                       \
    if (stream) _mm_sfence(); /* peers read these rows after the caller's next barrier */                  \
  }

SUM_KERNEL(sum_bf16_avx512_cvt, AVX512BF16, v512, V512_STEP, V512_ALIGN, v512_pack_cvt, v512_round_trip_cvt)
SUM_KERNEL(sum_bf16_avx512, AVX512, v512, V512_STEP, V512_ALIGN, v512_pack, v512_round_trip)
SUM_KERNEL(sum_bf16_avx2, AVX2, v256, V256_STEP, V256_ALIGN, v256_pack, v256_round_trip)

/* The best level this CPU runs: 3, 2, 1 as above, 0 = none (Java sums); decided once. */
static int sum_level = -1;

int moeyard_rowsum_level(void) {
  if (sum_level < 0) {
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) sum_level = 3;
    else if (avx512) sum_level = 2;
    else if (__builtin_cpu_supports("avx2")) sum_level = 1;
    else sum_level = 0;
  }
  return sum_level;
}

/*
 * Computes `outputs` sums (above) of the BF16 rows at src + off[i] into dst + dst_off + j * stride
 * (h BF16 values each). Terms are grouped by group_end (cumulative term counts, one entry per
 * group); out_end (cumulative group counts, one per output) makes the sums two-level, NULL makes
 * output j the single-level sum of group j. w may be NULL (unweighted). stream != 0 writes with
 * streaming stores where a row is aligned to the vector width and fences them before returning.
 * Indices, offsets and lengths are checked by the caller. level picks the instruction set (3, 2
 * or 1 as above): at least 1 and at most moeyard_rowsum_level() (the caller passes that; tests run
 * every level the CPU has). Every level gives the same bits.
 */
void moeyard_sum_bf16(int32_t level, const uint8_t *src, const int64_t *off, const float *w, const int32_t *group_end,
                      const int32_t *out_end, int32_t outputs, int32_t h, uint8_t *dst, int64_t dst_off,
                      int64_t stride, int32_t stream) {
  if (level == 3) sum_bf16_avx512_cvt(src, off, w, group_end, out_end, outputs, h, dst + dst_off, stride, stream);
  else if (level == 2) sum_bf16_avx512(src, off, w, group_end, out_end, outputs, h, dst + dst_off, stride, stream);
  else sum_bf16_avx2(src, off, w, group_end, out_end, outputs, h, dst + dst_off, stride, stream);
}
