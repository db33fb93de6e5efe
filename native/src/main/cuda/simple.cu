// moeyard native: the straightforward kernels of fused dispatch and combine, as they were before
// their tuning (dispatch: each lane keeps all K destinations in registers; combine: one row's
// 16-byte load at a time, then its multiply-adds). They give the same bits as the tuned kernels
// in dispatch.cu and combine.cu and are kept so that a bench can run both side by side in one
// process (-Dmoeyard.cuda.kernels=simple): a tuning is only kept when that comparison says so.
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

template <typename V>
__global__ void __launch_bounds__(cfg::kRowThreads)
dispatch_fused_kernel(const DispatchArgs a) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= a.T) return;
  const int K = a.K, S = a.S;
  const long long o = (long long)t * K;

  // Lane k resolves selection k: destination rank, row, destination pointer.
  int myP = -1, myRow = -1, myD = -1;
  if (lane < K) {
    myP = a.slotIds[o + lane];
    if (myP >= 0) {
      myD = rank_of_slot(myP, S);
      myRow = a.rowBase[myD][a.rank * S + local_slot_of(myP, S)] + a.pos[o + lane];
    }
  }
  // Every lane gets the K destinations (kept in registers: fully unrolled, guarded by k < K).
  V* dsts[cfg::kMaxTopk];
  int rows[cfg::kMaxTopk];
  int ds[cfg::kMaxTopk];
#pragma unroll
  for (int k = 0; k < cfg::kMaxTopk; ++k) {
    const int r = __shfl_sync(0xffffffffu, myRow, k < K ? k : 0);
    const int dd = __shfl_sync(0xffffffffu, myD, k < K ? k : 0);
    rows[k] = (k < K) ? r : -1;
    ds[k] = (k < K) ? dd : -1;
    dsts[k] = (k < K && dd >= 0)
                  ? reinterpret_cast<V*>(static_cast<char*>(a.recvX[dd]) + (long long)r * a.rowBytes)
                  : nullptr;
  }

  const int nvec = a.rowBytes / (int)sizeof(V);
  const V* src = reinterpret_cast<const V*>(static_cast<const char*>(a.x) + (long long)t * a.rowBytes);
  warp_copy_row<V>(src, dsts, K, nvec, lane);

  // FP8 scales: H/128 floats per row, copied unchanged into each destination row.
  if (a.scaleCols > 0) {
    const float* srow = a.scales + (long long)t * a.scaleCols;
    for (int c = lane; c < a.scaleCols; c += cfg::kWarpSize) {
      const float s = __ldg(srow + c);
#pragma unroll
      for (int k = 0; k < cfg::kMaxTopk; ++k)
        if (k < K && ds[k] >= 0) a.recvScales[ds[k]][(long long)rows[k] * a.scaleCols + c] = s;
    }
  }

  if (lane < K && myP >= 0) {
    a.recvW[myD][myRow] = a.topkW[o + lane];
    if (first_of_rank(a.slotIds + o, K, S, lane)) {
      // The pair record on the destination: which home pair, and its rows in ascending order.
      // Each row goes to its rank among the pair's rows (rows are distinct): no local arrays.
      const int idx = a.pairBase[myD][a.rank] + a.pairPos[o + lane];
      int* dstRows = a.pairRows[myD] + (long long)idx * K;
      int n = 0;
#pragma unroll
      for (int k = 0; k < cfg::kMaxTopk; ++k) {
        if (k < K && ds[k] == myD) {
          int before = 0;
#pragma unroll
          for (int q = 0; q < cfg::kMaxTopk; ++q)
            before += (q < K && ds[q] == myD && rows[q] < rows[k]) ? 1 : 0;
          dstRows[before] = rows[k];
          ++n;
        }
      }
      for (int i = n; i < K; ++i) dstRows[i] = -1;
      a.pairSrc[myD][idx] = a.rank;
      a.pairHome[myD][idx] = a.pairIdx[o + lane];
      a.pairToken[myD][idx] = t;
    }
  }
}

}  // namespace

cudaError_t launch_dispatch_fused_simple(const DispatchArgs& a, cudaStream_t st) {
  // the node-level path's row index and destination range are the tuned kernel's only
  if (a.rowIndex != nullptr || a.destLo != 0 || a.destHi < a.R) return cudaErrorInvalidValue;
  if (a.T == 0) return cudaSuccess;
  if (a.K > cfg::kMaxTopk || a.K < 1) return cudaErrorInvalidValue;
  const int blocks = blocks_for_warps(a.T);
  return with_row_vector(a.rowBytes, [&](auto v) {
    dispatch_fused_kernel<decltype(v)><<<blocks, cfg::kRowThreads, 0, st>>>(a);
    return cudaGetLastError();
  });
}


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
combine_home_kernel(const T* __restrict__ partials, const int* __restrict__ pairOffset,
                    const int* __restrict__ slotIds, int T_, int K, int S, int R, int L, int H,
                    T* __restrict__ out) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= T_) return;
  const int b = pairOffset[t], e = pairOffset[t + 1];
  const bool nodes = R > L;
  const unsigned long long ends =
      nodes ? node_run_ends(rank_mask(slotIds + (long long)t * K, K, S), R, L) : 0ull;
  using P = Pack<T, VEC>;
  for (int c = lane * VEC; c < H; c += cfg::kWarpSize * VEC) {
    float acc[VEC], total[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[v] = total[v] = 0.0f;
    for (int q = b; q < e; ++q) {
      const P in = *reinterpret_cast<const P*>(partials + (long long)q * H + c);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[v] = add_rn(acc[v], Conv<T>::to_float(in.v[v]));
      if ((ends >> (q - b)) & 1ull) {
#pragma unroll
        for (int v = 0; v < VEC; ++v) fold_node<T>(total[v], acc[v]);
      }
    }
    P o;
#pragma unroll
    for (int v = 0; v < VEC; ++v) o.v[v] = Conv<T>::from_float(nodes ? total[v] : acc[v]);
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
cudaError_t combine_home_typed(const HomeArgs& h, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(h.T);
#define MY_ARGS static_cast<const T*>(h.partials), h.pairOffset, h.slotIds, h.T, h.K, h.S, h.R, h.L, h.H, static_cast<T*>(h.out)
  if (h.H % VEC == 0)
    combine_home_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
  else
    combine_home_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(MY_ARGS);
#undef MY_ARGS
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_combine_fused_simple(int dtype, const void* y, const float* recvW, const int* pairSrc,
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

cudaError_t launch_combine_home_simple(int dtype, const HomeArgs& h, cudaStream_t st) {
  if (h.T == 0 || h.H == 0) return cudaSuccess;
  if (!home_args_valid(h)) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return combine_home_typed<__nv_bfloat16>(h, st);
    case kFP16: return combine_home_typed<__half>(h, st);
    case kFP32: return combine_home_typed<float>(h, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moeyard
