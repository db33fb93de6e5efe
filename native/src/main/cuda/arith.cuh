// moeyard native: the combine arithmetic, __host__ __device__, so the host unit tests check the
// exact operations and roundings the kernels use (DESIGN.md contract): products and sums in float,
// each rounded separately (no FMA contraction), results rounded to the dtype to nearest even.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

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

// Dtype conversions (round to nearest even).
template <typename T> struct Conv;
template <> struct Conv<__nv_bfloat16> {
  static MY_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static MY_HD __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};
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

}  // namespace moeyard
