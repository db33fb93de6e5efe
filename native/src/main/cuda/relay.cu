// moeyard native: the node-level (two-hop) path of the fused dispatch and combine
// (shuffle-engine/docs/data-path.md, "The node-level path"; index math in relay_math.cuh).
//
// Dispatch: node_rows numbers each source's tokens per node (a token's row in the message to that
// node); relay_pack gathers, once per remote node, the source's routing and the rows (and FP8
// scales) of its tokens with a pair there into one message; the stores into the windows, on the
// source's own node and at each relay, are dispatch.cu's kernel with a row index and a destination
// range. Combine: relay_combine_send is combine.cu's pair sum storing a pair of a source on another
// node into the staging of that source's relay on this node; relay_node_sum turns a relayed
// source's staged partials into one node partial per token; relay_home sums a home's own node's
// partials and the node partials it received, in node order.
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"
#include "relay_math.cuh"

namespace moeyard {

namespace {

constexpr unsigned kFull = 0xffffffffu;

// One block per node m; thread i counts a contiguous range of tokens, a block scan turns the counts
// into each range's first row, and the range is numbered in token order.
__global__ void node_rows_kernel(const int* __restrict__ slotIds, int T, int K, int S, int L,
                                 int* __restrict__ nodeRow, int* __restrict__ nodeCounts) {
  __shared__ int sRun[cfg::kSmallThreads];
  const int m = blockIdx.x;
  const int M = gridDim.x;
  const int per = (T + blockDim.x - 1) / blockDim.x;
  const int t0 = min(T, (int)threadIdx.x * per);
  const int t1 = min(T, t0 + per);
  int c = 0;
  for (int t = t0; t < t1; ++t) c += token_on_node(slotIds + (long long)t * K, K, S, L, m) ? 1 : 0;
  sRun[threadIdx.x] = c;
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int i = 0; i < (int)blockDim.x; ++i) {
      const int v = sRun[i];
      sRun[i] = run;
      run += v;
    }
    nodeCounts[m] = run;
  }
  __syncthreads();
  int j = sRun[threadIdx.x];
  for (int t = t0; t < t1; ++t)
    nodeRow[(long long)t * M + m] = token_on_node(slotIds + (long long)t * K, K, S, L, m) ? j++ : -1;
}

// One warp per token: its routing into every message that is sent, its row (read once) into the
// message of every remote node it has a pair on.
template <typename V>
__global__ void __launch_bounds__(cfg::kRowThreads)
relay_pack_kernel(const RelayPackArgs a) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= a.T) return;
  const int K = a.K, M = a.M;
  const long long tk = (long long)a.T * K;
  const long long rowsAt = msg_rows_at(a.T, K);
  for (int m = 0; m < M; ++m) {
    if (m == a.node || a.nodeCounts[m] == 0) continue;
    char* msg = a.sendArea + remote_slot(m, a.node) * a.slotBytes;
    if (lane < K) {
      reinterpret_cast<int*>(msg)[(long long)t * K + lane] = a.topkIdx[(long long)t * K + lane];
      reinterpret_cast<float*>(msg + 4 * tk)[(long long)t * K + lane] = a.topkW[(long long)t * K + lane];
    }
  }
  const int* nodeRow = a.nodeRow + (long long)t * M;
  const int nvec = a.rowBytes / (int)sizeof(V);
  const V* src = reinterpret_cast<const V*>(static_cast<const char*>(a.x) + (long long)t * a.rowBytes);
  warp_scatter_row(src, nvec, lane, M, [&](int m, V*& d) {
    const int j = nodeRow[m];
    if (m == a.node || j < 0) return false;
    d = reinterpret_cast<V*>(a.sendArea + remote_slot(m, a.node) * a.slotBytes + rowsAt + (long long)j * a.rowBytes);
    return true;
  });
  if (a.scaleCols > 0) {
    const float* srow = a.scales + (long long)t * a.scaleCols;
    for (int c = lane; c < a.scaleCols; c += cfg::kWarpSize) {
      const float sv = __ldg(srow + c);
      for (int m = 0; m < M; ++m) {
        const int j = nodeRow[m];
        if (m == a.node || j < 0) continue;
        char* msg = a.sendArea + remote_slot(m, a.node) * a.slotBytes;
        float* sc = reinterpret_cast<float*>(msg + msg_scales_at(a.T, K, a.nodeCounts[m], a.rowBytes));
        sc[(long long)j * a.scaleCols + c] = sv;
      }
    }
  }
}

// combine.cu's pair sum; a pair of a source on another node goes to that source's relay on this
// node (stage[src], row stageRow[src] + i) instead of home.
template <typename T, int VEC>
__global__ void __launch_bounds__(cfg::kRowThreads, cfg::kCombineMinBlocks)
relay_combine_send_kernel(const T* __restrict__ y, const float* __restrict__ recvW,
                          const int* __restrict__ pairSrc, const int* __restrict__ pairHome,
                          const int* __restrict__ pairRows, int numPairs, int K, int H,
                          void* const* __restrict__ partialPtrs, const RelayStage stage) {
  const int i = warp_id_global();
  const int lane = lane_id();
  if (i >= numPairs) return;
  int myRow = -1;
  float myW = 0.0f;
  if (lane < K) {
    myRow = pairRows[(long long)i * K + lane];
    if (myRow >= 0) myW = recvW[myRow];
  }
  const int n = __popc(__ballot_sync(kFull, myRow >= 0));
  const int src = pairSrc[i];
  T* dst = stage.rows[src] != nullptr
               ? static_cast<T*>(stage.rows[src]) + ((long long)stage.row[src] + i) * H
               : static_cast<T*>(partialPtrs[src]) + (long long)pairHome[i] * H;
  warp_sum_rows<T, VEC, true, cfg::kCombineUnroll, cfg::kCombineRowsAhead, false>(
      y, H, n, [&](int k) { return __shfl_sync(kFull, myRow, k); },
      [&](int k) { return __shfl_sync(kFull, myW, k); }, 0ull, dst, lane);
}

// One warp per token of the relayed source with a pair on this node m: its partials here (one per
// rank of m it has a pair with, ascending rank) summed in float from 0 and rounded once.
template <typename T, int VEC>
__global__ void __launch_bounds__(cfg::kRowThreads, cfg::kCombineMinBlocks)
relay_node_sum_kernel(const RelayNodeSumArgs a) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= a.T) return;
  const int j = a.nodeRow[(long long)t * a.M + a.m];
  if (j < 0) return;
  const int K = a.K, S = a.S;
  const int* row = a.slotIds + (long long)t * K;
  int myD = -1, myRow = -1;
  if (lane < K) {
    const int p = row[lane];
    if (p >= 0 && node_of_rank(rank_of_slot(p, S), a.L) == a.m && first_of_rank(row, K, S, lane)) {
      myD = rank_of_slot(p, S);
      myRow = run_start(a.pairsTo, a.m, a.L, myD) + a.pairPos[(long long)t * K + lane];
    }
  }
  int order = 0;
  for (int q = 0; q < K; ++q) {
    const int dq = __shfl_sync(kFull, myD, q);
    if (myD >= 0 && dq >= 0 && dq < myD) ++order;
  }
  const int n = __popc(__ballot_sync(kFull, myD >= 0));
  const T* staging = static_cast<const T*>(a.staging);
  warp_sum_rows<T, VEC, false, cfg::kCombineUnroll, cfg::kCombineRowsAhead, false>(
      staging, a.H, n,
      [&](int k) {
        const int at = __ffs(__ballot_sync(kFull, myD >= 0 && order == k)) - 1;
        return __shfl_sync(kFull, myRow, at);
      },
      [](int) { return 0.0f; }, 0ull, static_cast<T*>(a.out) + (long long)j * a.H, lane);
}

// One warp per token at home: its terms in node order (relay_home_term), each node's run folded.
// Lane l holds the row pointers of terms l and l + 32 (a token has at most R <= 64 terms).
template <typename T, int VEC, int U>
__global__ void __launch_bounds__(cfg::kRowThreads, cfg::kCombineMinBlocks)
relay_home_kernel(const RelayHomeArgs a) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= a.T) return;
  const unsigned long long mask = rank_mask(a.slotIds + (long long)t * a.K, a.K, a.S);
  const int n = relay_home_terms(mask, a.node, a.R, a.L);
  const unsigned long long ends = relay_home_run_ends(mask, a.node, a.R, a.L);
  const T* partials = static_cast<const T*>(a.partials);
  const T* recv = static_cast<const T*>(a.nodeRecv);
  auto term = [&](int k) -> unsigned long long {
    if (k >= n) return 0ull;
    int pi;
    const int m = relay_home_term(mask, a.node, a.R, a.L, k, &pi);
    const T* p = pi >= 0 ? partials + ((long long)a.pairOffset[t] + pi) * a.H
                         : recv + ((long long)remote_slot(m, a.node) * a.slotTokens +
                                   a.nodeRow[(long long)t * a.M + m]) * a.H;
    return reinterpret_cast<unsigned long long>(p);
  };
  const unsigned long long lo = term(lane), hi = term(lane + cfg::kWarpSize);
  warp_sum_rows<T, VEC, false, U, cfg::kCombineRowsAhead, true>(
      partials, a.H, n,
      [&](int k) {
        return reinterpret_cast<const T*>(
            __shfl_sync(kFull, k < cfg::kWarpSize ? lo : hi, k & (cfg::kWarpSize - 1)));
      },
      [](int) { return 0.0f; }, ends, static_cast<T*>(a.out) + (long long)t * a.H, lane);
}


template <typename T>
cudaError_t send_typed(const void* y, const float* recvW, const int* pairSrc, const int* pairHome,
                       const int* pairRows, int numPairs, int K, int H, void* const* partialPtrs,
                       const RelayStage& stage, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(numPairs);
  if (H % VEC == 0)
    relay_combine_send_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, stage);
  else
    relay_combine_send_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(y), recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, stage);
  return cudaGetLastError();
}

template <typename T>
cudaError_t node_sum_typed(const RelayNodeSumArgs& a, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(a.T);
  if (a.H % VEC == 0) relay_node_sum_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else relay_node_sum_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t home_typed(const RelayHomeArgs& a, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(a.T);
  // a second float per column (the node sum beside the total), as combine.cu's home sum on nodes
  constexpr int UN = cfg::nodes_unroll(cfg::kCombineUnroll);
  if (a.H % VEC == 0) relay_home_kernel<T, VEC, UN><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  else relay_home_kernel<T, 1, UN><<<blocks, cfg::kRowThreads, 0, st>>>(a);
  return cudaGetLastError();
}

bool shape_ok(int R, int L) { return R >= 1 && R <= cfg::kMaxRanks && L >= 1 && R % L == 0; }

}  // namespace

cudaError_t launch_node_rows(const int* slotIds, int T, int K, int S, int R, int L, int* nodeRow,
                             int* nodeCounts, cudaStream_t st) {
  if (!shape_ok(R, L) || K < 1 || K > cfg::kMaxTopk || T < 0) return cudaErrorInvalidValue;
  node_rows_kernel<<<R / L, cfg::kSmallThreads, 0, st>>>(slotIds, T, K, S, L, nodeRow, nodeCounts);
  return cudaGetLastError();
}

cudaError_t launch_relay_pack(const RelayPackArgs& a, cudaStream_t st) {
  if (a.T == 0) return cudaSuccess;
  if (a.K < 1 || a.K > cfg::kMaxTopk || a.M < 2 || a.M > cfg::kMaxRanks) return cudaErrorInvalidValue;
  // the slots are remote_slot(m, node): a node outside [0, M) would write past the last one; a
  // message of T tokens must fit its slot whatever its node counts are
  if (a.T < 0 || a.node < 0 || a.node >= a.M ||
      a.slotBytes < msg_bytes(a.T, a.K, a.T, a.rowBytes, a.scaleCols))
    return cudaErrorInvalidValue;
  return with_row_vector(a.rowBytes, [&](auto v) {
    relay_pack_kernel<decltype(v)><<<blocks_for_warps(a.T), cfg::kRowThreads, 0, st>>>(a);
    return cudaGetLastError();
  });
}

cudaError_t launch_relay_combine_send(int dtype, const void* y, const float* recvW, const int* pairSrc,
                                      const int* pairHome, const int* pairRows, int numPairs, int K,
                                      int H, void* const* partialPtrs, const RelayStage& stage,
                                      cudaStream_t st) {
  if (numPairs == 0 || H == 0) return cudaSuccess;
  if (K > cfg::kMaxTopk || K < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return send_typed<__nv_bfloat16>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, stage, st);
    case kFP16: return send_typed<__half>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, stage, st);
    case kFP32: return send_typed<float>(y, recvW, pairSrc, pairHome, pairRows, numPairs, K, H, partialPtrs, stage, st);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_relay_node_sum(int dtype, const RelayNodeSumArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return cudaSuccess;
  if (a.K > cfg::kMaxTopk || a.K < 1 || !shape_ok(a.R, a.L) || a.M != a.R / a.L) return cudaErrorInvalidValue;
  if (a.m < 0 || a.m >= a.M) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return node_sum_typed<__nv_bfloat16>(a, st);
    case kFP16: return node_sum_typed<__half>(a, st);
    case kFP32: return node_sum_typed<float>(a, st);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_relay_home(int dtype, const RelayHomeArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return cudaSuccess;
  if (a.K > cfg::kMaxTopk || a.K < 1 || !shape_ok(a.R, a.L) || a.M != a.R / a.L) return cudaErrorInvalidValue;
  // a token's row in a node's slot is below its tokens, so a slot of fewer rows would be overrun
  if (a.node < 0 || a.node >= a.M || a.slotTokens < a.T) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return home_typed<__nv_bfloat16>(a, st);
    case kFP16: return home_typed<__half>(a, st);
    case kFP32: return home_typed<float>(a, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moeyard
