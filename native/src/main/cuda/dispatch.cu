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

constexpr unsigned kFull = 0xffffffffu;

// Every lane holds at most one selection (lane k < K: selection k) and the warp broadcasts a
// selection's destination when it stores to it, rather than each lane keeping arrays of K
// destinations (those cost 116 registers, i.e. two blocks per SM). Loops that shuffle run the same
// number of times on every lane; lanes guard their own columns.
template <typename V>
__global__ void __launch_bounds__(cfg::kRowThreads)
dispatch_fused_kernel(const DispatchArgs a) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= a.T) return;
  const int K = a.K, S = a.S;
  const long long o = (long long)t * K;
  long long xRow = t;
  if (a.rowIndex != nullptr) {
    xRow = a.rowIndex[(long long)t * a.rowStride];
    if (xRow < 0) return;  // the whole warp: nothing of this token goes to these destinations
  }

  // Lane k resolves selection k: destination rank, row, destination pointer.
  int myP = -1, myRow = -1, myD = -1;
  if (lane < K) {
    myP = a.slotIds[o + lane];
    if (myP >= 0) {
      const int d = rank_of_slot(myP, S);
      if (d >= a.destLo && d < a.destHi) {
        myD = d;
        myRow = a.rowBase[myD][a.rank * S + local_slot_of(myP, S)] + a.pos[o + lane];
      }
    }
  }
  const unsigned long long myDst =
      myD >= 0 ? reinterpret_cast<unsigned long long>(static_cast<char*>(a.recvX[myD]) + (long long)myRow * a.rowBytes)
               : 0ull;

  const int nvec = a.rowBytes / (int)sizeof(V);
  const V* src = reinterpret_cast<const V*>(static_cast<const char*>(a.x) + xRow * a.rowBytes);
  warp_scatter_row(src, nvec, lane, K, [&](int k, V*& d) {
    d = reinterpret_cast<V*>(__shfl_sync(kFull, myDst, k));
    return d != nullptr;
  });

  // FP8 scales: H/128 floats per row, copied unchanged into each destination row.
  if (a.scaleCols > 0) {
    const float* srow = a.scales + xRow * a.scaleCols;
    for (int cb = 0; cb < a.scaleCols; cb += cfg::kWarpSize) {
      const int c = cb + lane;
      const float sv = c < a.scaleCols ? __ldg(srow + c) : 0.0f;
      for (int k = 0; k < K; ++k) {
        const int dd = __shfl_sync(kFull, myD, k);
        const int rr = __shfl_sync(kFull, myRow, k);
        if (dd >= 0 && c < a.scaleCols) a.recvScales[dd][(long long)rr * a.scaleCols + c] = sv;
      }
    }
  }

  // The pair record on each destination: which home pair, and its rows in ascending order. Each
  // selection's row goes to its rank among the rows of the same destination (rows are distinct).
  int before = 0, same = 0;
  for (int q = 0; q < K; ++q) {
    const int dq = __shfl_sync(kFull, myD, q);
    const int rq = __shfl_sync(kFull, myRow, q);
    if (myD >= 0 && dq == myD) {
      ++same;
      before += rq < myRow ? 1 : 0;
    }
  }
  if (myD >= 0) {
    a.recvW[myD][myRow] = a.topkW[o + lane];
    const int idx = a.pairBase[myD][a.rank] + a.pairPos[o + lane];
    int* dstRows = a.pairRows[myD] + (long long)idx * K;
    dstRows[before] = myRow;
    if (first_of_rank(a.slotIds + o, K, S, lane)) {
      for (int i = same; i < K; ++i) dstRows[i] = -1;
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
  return with_row_vector(a.rowBytes, [&](auto v) {
    dispatch_fused_kernel<decltype(v)><<<blocks, cfg::kRowThreads, 0, st>>>(a);
    return cudaGetLastError();
  });
}

}  // namespace moeyard
