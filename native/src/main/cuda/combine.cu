// moeyard native: fused combine. On the expert rank, one warp per received token-rank pair gathers
// the pair's rows (ascending local slot = ascending row), applies the top-k weights and sums them in
// that fixed order in float (explicit __fmul_rn / __fadd_rn: no FMA contraction), rounds once to
// the output dtype and stores the partial straight into the home rank's partial buffer. At home, one
// warp per token sums its partials in ascending destination-rank order and rounds once more.
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

template <typename T, int VEC>
__global__ void __launch_bounds__(cfg::kRowThreads)
combine_fused_kernel(const T* __restrict__ y, const float* __restrict__ recvW,
                     const int* __restrict__ pairSrc, const int* __restrict__ pairHome,
                     const int* __restrict__ pairRows, int numPairs, int K, int H,
                     void* const* __restrict__ partialPtrs) {
  const int i = warp_id_global();
  const int lane = lane_id();
  if (i >= numPairs) return;
  int rows[cfg::kMaxTopk];
  float ws[cfg::kMaxTopk];
  int n = 0;
#pragma unroll
  for (int k = 0; k < cfg::kMaxTopk; ++k) {
    const int r = k < K ? pairRows[(long long)i * K + k] : -1;
    rows[k] = r;
    ws[k] = r >= 0 ? recvW[r] : 0.0f;
    n += r >= 0 ? 1 : 0;
  }
  T* dst = static_cast<T*>(partialPtrs[pairSrc[i]]) + (long long)pairHome[i] * H;
  using P = Pack<T, VEC>;
  for (int c = lane * VEC; c < H; c += cfg::kWarpSize * VEC) {
    float acc[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[v] = 0.0f;
#pragma unroll
    for (int k = 0; k < cfg::kMaxTopk; ++k) {
      if (k < n) {
        const P in = *reinterpret_cast<const P*>(y + (long long)rows[k] * H + c);
#pragma unroll
        for (int v = 0; v < VEC; ++v)
          acc[v] = combine_step(acc[v], ws[k], Conv<T>::to_float(in.v[v]));
      }
    }
    P out;
#pragma unroll
    for (int v = 0; v < VEC; ++v) out.v[v] = Conv<T>::from_float(acc[v]);
    *reinterpret_cast<P*>(dst + c) = out;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(cfg::kRowThreads)
combine_home_kernel(const T* __restrict__ partials, const int* __restrict__ pairOffset, int T_,
                    int H, T* __restrict__ out) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= T_) return;
  const int b = pairOffset[t], e = pairOffset[t + 1];
  using P = Pack<T, VEC>;
  for (int c = lane * VEC; c < H; c += cfg::kWarpSize * VEC) {
    float acc[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[v] = 0.0f;
    for (int q = b; q < e; ++q) {
      const P in = *reinterpret_cast<const P*>(partials + (long long)q * H + c);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] = add_rn(acc[v], Conv<T>::to_float(in.v[v]));
    }
    P o;
#pragma unroll
    for (int v = 0; v < VEC; ++v) o.v[v] = Conv<T>::from_float(acc[v]);
    *reinterpret_cast<P*>(out + (long long)t * H + c) = o;
  }
}

template <typename T>
cudaError_t combine_fused_typed(const void* y, const float* recvW, const int* pairSrc,
                                const int* pairHome, const int* pairRows, int numPairs, int K,
                                int H, void* const* partialPtrs, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(numPairs);
  if (H % VEC == 0)
    combine_fused_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs);
  else
    combine_fused_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs);
  return cudaGetLastError();
}

template <typename T>
cudaError_t combine_home_typed(const void* partials, const int* pairOffset, int T_, int H,
                               void* out, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(T_);
  if (H % VEC == 0)
    combine_home_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(partials), pairOffset, T_, H, static_cast<T*>(out));
  else
    combine_home_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(partials), pairOffset, T_, H, static_cast<T*>(out));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_combine_fused(int dtype, const void* y, const float* recvW, const int* pairSrc,
                                 const int* pairHome, const int* pairRows, int numPairs, int K,
                                 int H, void* const* partialPtrs, cudaStream_t st) {
  if (numPairs == 0 || H == 0) return cudaSuccess;
  if (K > cfg::kMaxTopk || K < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return combine_fused_typed<__nv_bfloat16>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    case kFP16: return combine_fused_typed<__half>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    case kFP32: return combine_fused_typed<float>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_combine_home(int dtype, const void* partials, const int* pairOffset, int T,
                                int H, void* out, cudaStream_t st) {
  if (T == 0 || H == 0) return cudaSuccess;
  switch (dtype) {
    case kBF16: return combine_home_typed<__nv_bfloat16>(partials, pairOffset, T, H, out, st);
    case kFP16: return combine_home_typed<__half>(partials, pairOffset, T, H, out, st);
    case kFP32: return combine_home_typed<float>(partials, pairOffset, T, H, out, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moeyard
