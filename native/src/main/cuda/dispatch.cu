// moeyard native: fused dispatch. One warp per token of the source rank: the warp reads the token
// row once (16-byte vector loads where the row size allows) and stores it straight into its final
// expert-major row on every destination rank it selects (peer pointers: on one device, or mapped
// through CUDA IPC). The same warp writes the weight (and the FP8 scales) of each destination row
// and, once per token-rank pair, the pair record the combine needs (the handle).
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

cudaError_t launch_dispatch_fused(const DispatchArgs& a, cudaStream_t st) {
  if (a.T == 0) return cudaSuccess;
  if (a.K > cfg::kMaxTopk || a.K < 1) return cudaErrorInvalidValue;
  const int blocks = blocks_for_warps(a.T);
  if (a.rowBytes % 16 == 0)
    dispatch_fused_kernel<int4><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else if (a.rowBytes % 8 == 0)
    dispatch_fused_kernel<int2><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else if (a.rowBytes % 4 == 0)
    dispatch_fused_kernel<int><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else if (a.rowBytes % 2 == 0)
    dispatch_fused_kernel<short><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else
    dispatch_fused_kernel<char><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  return cudaGetLastError();
}

}  // namespace moeyard
