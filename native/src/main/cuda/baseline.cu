// moeyard native: the unfused baseline (what Megatron's alltoall dispatcher does), kept for the
// comparison. Dispatch: permute (one row per (token, k) selection, rank-major: destination rank,
// local slot, token) -> per-peer copy (cudaMemcpyAsync per peer, issued by the host) -> sort chunks
// (staging [src rank][local slot] blocks reordered into the expert-major layout). Combine: sort
// chunks back -> per-peer copy back -> unpermute at home with the same arithmetic as the fused
// combine (selections grouped by destination rank ascending, local slot ascending inside a rank,
// each rank's partial rounded to the dtype, then summed in rank order; on more than one node each
// node's sum rounded, then the node sums summed in node order), so outputs are identical.
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

template <typename V>
__device__ __forceinline__ void warp_copy_one(const void* src, void* dst, int rowBytes, int lane) {
  const V* s = static_cast<const V*>(src);
  V* d = static_cast<V*>(dst);
  const int nvec = rowBytes / (int)sizeof(V);
  for (int v = lane; v < nvec; v += cfg::kWarpSize) d[v] = load_nc(s + v);
}

// One warp per (token, k) selection: the token row is read once per selection (no dedup).
template <typename V>
__global__ void __launch_bounds__(cfg::kRowThreads)
permute_kernel(const void* __restrict__ x, const float* __restrict__ scales, int scaleCols,
               const float* __restrict__ topkW, const int* __restrict__ slotIds,
               const int* __restrict__ pos, const int* __restrict__ slotPrefix, int T, int K,
               int rowBytes, void* __restrict__ permX, float* __restrict__ permScales,
               float* __restrict__ permW) {
  const long long sel = (long long)blockIdx.x * cfg::kRowsPerBlock + threadIdx.x / cfg::kWarpSize;
  const int lane = lane_id();
  if (sel >= (long long)T * K) return;
  const int p = slotIds[sel];
  if (p < 0) return;
  const long long t = sel / K;
  const long long row = (long long)slotPrefix[p] + pos[sel];
  warp_copy_one<V>(static_cast<const char*>(x) + t * rowBytes,
                   static_cast<char*>(permX) + row * rowBytes, rowBytes, lane);
  for (int c = lane; c < scaleCols; c += cfg::kWarpSize)
    permScales[row * scaleCols + c] = scales[t * scaleCols + c];
  if (lane == 0) permW[row] = topkW[sel];
}

// One warp per staging row on the destination: find its [src][slot] block, move it to its
// expert-major row.
template <typename V>
__global__ void __launch_bounds__(cfg::kRowThreads)
sort_chunks_kernel(const void* __restrict__ stagingX, const float* __restrict__ stagingScales,
                   const float* __restrict__ stagingW, const int* __restrict__ stagingPrefix,
                   const int* __restrict__ rowBase, int nBlocks, int numRows, int rowBytes,
                   int scaleCols, void* __restrict__ recvX, float* __restrict__ recvScales,
                   float* __restrict__ recvW, bool back) {
  const int row = warp_id_global();
  const int lane = lane_id();
  if (row >= numRows) return;
  const int c = find_chunk(stagingPrefix, nBlocks, row);
  if (c < 0) return;
  const long long dst = (long long)rowBase[c] + (row - stagingPrefix[c]);
  if (!back) {
    warp_copy_one<V>(static_cast<const char*>(stagingX) + (long long)row * rowBytes,
                     static_cast<char*>(recvX) + dst * rowBytes, rowBytes, lane);
    for (int s = lane; s < scaleCols; s += cfg::kWarpSize)
      recvScales[dst * scaleCols + s] = stagingScales[(long long)row * scaleCols + s];
    if (lane == 0) recvW[dst] = stagingW[row];
  } else {
    // Reverse: expert-major y (passed as stagingX) -> staging order (passed as recvX).
    warp_copy_one<V>(static_cast<const char*>(stagingX) + dst * rowBytes,
                     static_cast<char*>(recvX) + (long long)row * rowBytes, rowBytes, lane);
  }
}

// One warp per token at home: selections in ascending physical slot order, which is ascending
// destination rank then ascending local slot (slots are rank-major), and ascending node.
template <typename T, int VEC>
__global__ void __launch_bounds__(cfg::kRowThreads)
unpermute_kernel(const T* __restrict__ returnY, const float* __restrict__ topkW,
                 const int* __restrict__ slotIds, const int* __restrict__ pos,
                 const int* __restrict__ slotPrefix, int T_, int K, int S, int R, int L, int H,
                 T* __restrict__ out) {
  const int t = warp_id_global();
  const int lane = lane_id();
  if (t >= T_) return;
  const long long o = (long long)t * K;
  int ps[cfg::kMaxTopk];
  int rows[cfg::kMaxTopk];
  float ws[cfg::kMaxTopk];
  int n = 0;
  for (int k = 0; k < K; ++k) {
    const int p = slotIds[o + k];
    if (p < 0) continue;
    ps[n] = p;
    rows[n] = slotPrefix[p] + pos[o + k];
    ws[n] = topkW[o + k];
    ++n;
  }
  // Sort the selections by slot (insertion sort, keys are distinct).
  for (int i = 1; i < n; ++i) {
    const int p = ps[i], r = rows[i];
    const float w = ws[i];
    int j = i - 1;
    while (j >= 0 && ps[j] > p) { ps[j + 1] = ps[j]; rows[j + 1] = rows[j]; ws[j + 1] = ws[j]; --j; }
    ps[j + 1] = p; rows[j + 1] = r; ws[j + 1] = w;
  }
  // One node: the rank partials sum into nodeAcc and that is the result (today's one-level rule);
  // more nodes: nodeAcc is folded into total at each change of node.
  const bool nodes = R > L;
  using P = Pack<T, VEC>;
  for (int c = lane * VEC; c < H; c += cfg::kWarpSize * VEC) {
    float total[VEC], nodeAcc[VEC], acc[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) { total[v] = 0.0f; nodeAcc[v] = 0.0f; acc[v] = 0.0f; }
    int curD = -1;
    for (int i = 0; i < n; ++i) {
      const int d = rank_of_slot(ps[i], S);
      if (d != curD) {
        if (curD >= 0) {
#pragma unroll
          for (int v = 0; v < VEC; ++v) {
            nodeAcc[v] = add_rn(nodeAcc[v], round_through<T>(acc[v]));
            acc[v] = 0.0f;
          }
          if (nodes && node_of_rank(d, L) != node_of_rank(curD, L)) {
#pragma unroll
            for (int v = 0; v < VEC; ++v) fold_node<T>(total[v], nodeAcc[v]);
          }
        }
        curD = d;
      }
      const P in = *reinterpret_cast<const P*>(returnY + (long long)rows[i] * H + c);
#pragma unroll
      for (int v = 0; v < VEC; ++v)
        acc[v] = combine_step(acc[v], ws[i], Conv<T>::to_float(in.v[v]));
    }
    if (curD >= 0) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        nodeAcc[v] = add_rn(nodeAcc[v], round_through<T>(acc[v]));
        if (nodes) fold_node<T>(total[v], nodeAcc[v]);
      }
    }
    P res;
#pragma unroll
    for (int v = 0; v < VEC; ++v) res.v[v] = Conv<T>::from_float(nodes ? total[v] : nodeAcc[v]);
    *reinterpret_cast<P*>(out + (long long)t * H + c) = res;
  }
}

template <typename T>
cudaError_t unpermute_typed(const void* returnY, const float* topkW, const int* slotIds,
                            const int* pos, const int* slotPrefix, int T_, int K, int S, int R,
                            int L, int H, void* out, cudaStream_t st) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const int blocks = blocks_for_warps(T_);
  if (H % VEC == 0)
    unpermute_kernel<T, VEC><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(returnY), topkW, slotIds, pos, slotPrefix, T_, K, S, R, L, H,
        static_cast<T*>(out));
  else
    unpermute_kernel<T, 1><<<blocks, cfg::kRowThreads, 0, st>>>(
        static_cast<const T*>(returnY), topkW, slotIds, pos, slotPrefix, T_, K, S, R, L, H,
        static_cast<T*>(out));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_permute(const void* x, const float* scales, int scaleCols, const float* topkW,
                           const int* slotIds, const int* pos, const int* slotPrefix, int T, int K,
                           int rowBytes, void* permX, float* permScales, float* permW,
                           cudaStream_t st) {
  const long long sels = (long long)T * K;
  if (sels == 0) return cudaSuccess;
  const int blocks = blocks_for_warps(sels);
  return with_row_vector(rowBytes, [&](auto v) {
    permute_kernel<decltype(v)><<<blocks, cfg::kRowThreads, 0, st>>>(
        x, scales, scaleCols, topkW, slotIds, pos, slotPrefix, T, K, rowBytes, permX, permScales, permW);
    return cudaGetLastError();
  });
}

static cudaError_t sort_chunks_any(const void* src, const float* srcScales, const float* srcW,
                                   const int* stagingPrefix, const int* rowBase, int nBlocks,
                                   int numRows, int rowBytes, int scaleCols, void* dst,
                                   float* dstScales, float* dstW, bool back, cudaStream_t st) {
  if (numRows == 0) return cudaSuccess;
  const int blocks = blocks_for_warps(numRows);
  return with_row_vector(rowBytes, [&](auto v) {
    sort_chunks_kernel<decltype(v)><<<blocks, cfg::kRowThreads, 0, st>>>(
        src, srcScales, srcW, stagingPrefix, rowBase, nBlocks, numRows, rowBytes, scaleCols, dst, dstScales, dstW, back);
    return cudaGetLastError();
  });
}

cudaError_t launch_sort_chunks(const void* stagingX, const float* stagingScales,
                               const float* stagingW, const int* stagingPrefix, const int* rowBase,
                               int R, int S, int numRows, int rowBytes, int scaleCols, void* recvX,
                               float* recvScales, float* recvW, cudaStream_t st) {
  return sort_chunks_any(stagingX, stagingScales, stagingW, stagingPrefix, rowBase, R * S, numRows,
                         rowBytes, scaleCols, recvX, recvScales, recvW, false, st);
}

cudaError_t launch_sort_chunks_back(const void* y, const int* stagingPrefix, const int* rowBase,
                                    int R, int S, int numRows, int rowBytes, void* stagingY,
                                    cudaStream_t st) {
  return sort_chunks_any(y, nullptr, nullptr, stagingPrefix, rowBase, R * S, numRows, rowBytes, 0,
                         stagingY, nullptr, nullptr, true, st);
}

cudaError_t launch_unpermute(int dtype, const void* returnY, const float* topkW, const int* slotIds,
                             const int* pos, const int* slotPrefix, int T, int K, int S, int R,
                             int L, int H, void* out, cudaStream_t st) {
  if (T == 0 || H == 0) return cudaSuccess;
  if (K > cfg::kMaxTopk || K < 1) return cudaErrorInvalidValue;
  if (R < 1 || L < 1 || R % L != 0) return cudaErrorInvalidValue;
  switch (dtype) {
    case kBF16: return unpermute_typed<__nv_bfloat16>(returnY, topkW, slotIds, pos, slotPrefix, T, K, S, R, L, H, out, st);
    case kFP16: return unpermute_typed<__half>(returnY, topkW, slotIds, pos, slotPrefix, T, K, S, R, L, H, out, st);
    case kFP32: return unpermute_typed<float>(returnY, topkW, slotIds, pos, slotPrefix, T, K, S, R, L, H, out, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moeyard
