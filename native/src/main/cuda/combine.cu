// moeyard native: fused combine. On the expert rank, one warp per received token-rank pair gathers
// the pair's rows (ascending local slot = ascending row), applies the top-k weights and sums them in
// that fixed order in float (explicit __fmul_rn / __fadd_rn: no FMA contraction), rounds once to
// the output dtype and stores the partial straight into the home rank's partial buffer. At home, one
// warp per token sums its partials in ascending destination-rank order and rounds once more; on
// more than one node, each node's run of partials is summed and rounded first, and the node
// partials are summed in node order (shuffle-engine/docs/data-path.md, "Combine").
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

template <typename T, int VEC, int U, int A, int MINB>
__global__ void __launch_bounds__(cfg::kRowThreads, MINB)
combine_fused_kernel(const T* __restrict__ y, const float* __restrict__ recvW,
                     const int* __restrict__ pairSrc, const int* __restrict__ pairHome,
                     const int* __restrict__ pairRows, int numPairs, int K, int H,
                     void* const* __restrict__ partialPtrs) {
  const int i = warp_id_global();
  const int lane = lane_id();
  if (i >= numPairs) return;
  // Lane k (< K <= 32) loads row k of the pair and its weight, all K at once; the rows are
  // ascending and -1 padded, so the pair has n = (lanes holding a row) of them.
  int myRow = -1;
  float myW = 0.0f;
  if (lane < K) {
    myRow = pairRows[(long long)i * K + lane];
    if (myRow >= 0) myW = recvW[myRow];
  }
  const int n = __popc(__ballot_sync(0xffffffffu, myRow >= 0));
  T* dst = static_cast<T*>(partialPtrs[pairSrc[i]]) + (long long)pairHome[i] * H;
  warp_sum_rows<T, VEC, true, U, A, false>(
      y, H, n, [&](int k) { return __shfl_sync(0xffffffffu, myRow, k); },
      [&](int k) { return __shfl_sync(0xffffffffu, myW, k); }, 0ull, dst, lane);
}

// NODES (more than one node): where each node's run of partials ends follows from the token's
// rank mask, recomputed from the home rank's slotIds with the function that ordered the pairs in
// the layout (rank_mask), so no table of its own is built or kept.
template <typename T, int VEC, int U, int A, int MINB, bool NODES>
__global__ void __launch_bounds__(cfg::kRowThreads, MINB)
combine_home_kernel(const T* __restrict__ partials, const int* __restrict__ pairOffset,
                    const int* __restrict__ slotIds, int T_, int K, int S, int R, int L, int H,
                    T* __restrict__ out) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= T_) return;
  const int b = pairOffset[t], e = pairOffset[t + 1];
  const unsigned long long ends =
      NODES ? node_run_ends(rank_mask(slotIds + (long long)t * K, K, S), R, L) : 0ull;
  warp_sum_rows<T, VEC, false, U, A, NODES>(
      partials, H, e - b, [&](int k) { return b + k; }, [](int) { return 0.0f; }, ends,
      out + (long long)t * H, lane);
}

template <typename T, int U, int A, int MINB>
cudaError_t combine_fused_typed(const void* y, const float* recvW, const int* pairSrc,
                                const int* pairHome, const int* pairRows, int numPairs, int K,
                                int H, void* const* partialPtrs, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(numPairs);
  if (H % VEC == 0)
    combine_fused_kernel<T, VEC, U, A, MINB><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs);
  else
    combine_fused_kernel<T, 1, U, A, MINB><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs);
  return cudaGetLastError();
}

template <typename T, int U, int A, int MINB>
cudaError_t combine_home_typed(const HomeArgs& h, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(h.T);
  const T* partials = static_cast<const T*>(h.partials);
  T* out = static_cast<T*>(h.out);
#define MY_ARGS partials, h.pairOffset, h.slotIds, h.T, h.K, h.S, h.R, h.L, h.H, out
  const bool nodes = h.R > h.L;
  constexpr int UN = cfg::nodes_unroll(U);
  if (h.H % VEC == 0) {
    if (nodes) combine_home_kernel<T, VEC, UN, A, MINB, true><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
    else combine_home_kernel<T, VEC, U, A, MINB, false><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
  } else {
    if (nodes) combine_home_kernel<T, 1, UN, A, MINB, true><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
    else combine_home_kernel<T, 1, U, A, MINB, false><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
  }
#undef MY_ARGS
  return cudaGetLastError();
}

// Tuning candidates (kernel set ids >= 2 of the JNI calls; 0 = the defaults of config.cuh):
// {U, A, min blocks per SM}. For sweeps on a GPU; the winner becomes config.cuh's default.
#define MOEYARD_COMBINE_VARIANTS(X)      \
  X(2, 4, 1, 4)                           \
  X(3, 2, 1, 4)                           \
  X(4, 1, 1, 8)                           \
  X(5, 2, 2, 3)                           \
  X(6, 1, 2, 8)                           \
  X(7, 2, 1, 1)

template <typename T>
cudaError_t combine_fused_variant(int variant, const void* y, const float* recvW, const int* pairSrc,
                                  const int* pairHome, const int* pairRows, int numPairs, int K,
                                  int H, void* const* partialPtrs, cudaStream_t st) {
  switch (variant) {
#define X(id, u, a, b) \
  case id: return combine_fused_typed<T, u, a, b>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    MOEYARD_COMBINE_VARIANTS(X)
#undef X
    default:
      return combine_fused_typed<T, cfg::kCombineUnroll, cfg::kCombineRowsAhead, cfg::kCombineMinBlocks>(
          y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
  }
}

template <typename T>
cudaError_t combine_home_variant(int variant, const HomeArgs& h, cudaStream_t st) {
  switch (variant) {
#define X(id, u, a, b) \
  case id: return combine_home_typed<T, u, a, b>(h, st);
    MOEYARD_COMBINE_VARIANTS(X)
#undef X
    default:
      return combine_home_typed<T, cfg::kCombineUnroll, cfg::kCombineRowsAhead, cfg::kCombineMinBlocks>(h, st);
  }
}

}  // namespace

cudaError_t launch_combine_fused(int variant, int dtype, const void* y, const float* recvW, const int* pairSrc,
                                 const int* pairHome, const int* pairRows, int numPairs, int K,
                                 int H, void* const* partialPtrs, cudaStream_t st) {
  if (numPairs == 0 || H == 0) return cudaSuccess;
  if (K > cfg::kMaxTopk || K < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return combine_fused_variant<__nv_bfloat16>(variant, y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    case kFP16: return combine_fused_variant<__half>(variant, y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    case kFP32: return combine_fused_variant<float>(variant, y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, st);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_combine_home(int variant, int dtype, const HomeArgs& h, cudaStream_t st) {
  if (h.T == 0 || h.H == 0) return cudaSuccess;
  if (!home_args_valid(h)) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return combine_home_variant<__nv_bfloat16>(variant, h, st);
    case kFP16: return combine_home_variant<__half>(variant, h, st);
    case kFP32: return combine_home_variant<float>(variant, h, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moeyard
