// moeyard native: the combine arithmetic, __host__ __device__, so the host unit tests check the
// exact operations and roundings the kernels use (shuffle-engine/docs/data-path.md): products and sums in float,
// each rounded separately (no FMA contraction), results rounded to the dtype to nearest even.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "index_math.cuh"  // MY_HD

namespace moeyard {

MY_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);  // never contracted into an FMA
#else
  volatile float r = a * b;  // host: a separate, rounded product
  return r;
#endif
}

MY_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  volatile float r = a + b;
  return r;
#endif
}

// acc + w * y, with the product rounded before the sum.
MY_HD float combine_step(float acc, float w, float y) { return add_rn(acc, mul_rn(w, y)); }

MY_HD unsigned int float_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  unsigned int b;
  memcpy(&b, &v, sizeof b);
  return b;
#endif
}

// float -> bf16 bits, nearest even, by the integer formula of the CPU backend
// (io.moeyard.engine.Numerics.floatToBf16), so one conversion gives the CPU's bits for every
// input, NaN included (cvt.rn.bf16.f32 would return the canonical 0x7FFF for any NaN). NaN
// payloads are still not part of the CPU/GPU contract: GPU arithmetic itself returns canonical
// NaNs, x86 propagates an operand's payload.
MY_HD unsigned short bf16_bits_rn(float v) {
  unsigned int bits = float_bits(v);
  unsigned int is_nan = (0x7F800000u - (bits & 0x7FFFFFFFu)) >> 31;  // 1 iff |v| is above +inf's bits
  unsigned int rounding = (0x7FFFu + ((bits >> 16) & 1u)) & (is_nan - 1u);
  return (unsigned short)(((bits + rounding) >> 16) | (is_nan << 6));
}

// Dtype conversions (round to nearest even).
template <typename T> struct Conv;
template <> struct Conv<__nv_bfloat16> {
  static MY_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static MY_HD __nv_bfloat16 from_float(float v) {
    __nv_bfloat16_raw raw;
    raw.x = bf16_bits_rn(v);
    return __nv_bfloat16(raw);
  }
};
// FP16 NaNs get CUDA's canonical 0x7FFF; Java's own FP16 NaN payloads differ between the
// interpreter and JIT-compiled code (Float.floatToFloat16 vs its vcvtps2ph intrinsic).
template <> struct Conv<__half> {
  static MY_HD float to_float(__half v) { return __half2float(v); }
  static MY_HD __half from_float(float v) { return __float2half_rn(v); }
};
template <> struct Conv<float> {
  static MY_HD float to_float(float v) { return v; }
  static MY_HD float from_float(float v) { return v; }
};

// v rounded to T and back (the value a stored partial carries).
template <typename T> MY_HD float round_through(float v) {
  return Conv<T>::to_float(Conv<T>::from_float(v));
}

// The home reduction's second level (topologies of more than one node): the running node sum,
// rounded to T, joins the total in float, and the next node's sum starts from zero.
template <typename T> MY_HD void fold_node(float& total, float& nodeAcc) {
  total = add_rn(total, round_through<T>(nodeAcc));
  nodeAcc = 0.0f;
}

}  // namespace moeyard
