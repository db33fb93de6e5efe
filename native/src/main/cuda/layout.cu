// moeyard native: the dispatch layout on the device (DeepEP get_dispatch_layout, plus the FUSCO
// receive offsets). Deterministic: counts use integer atomics only into per-chunk bins, and every
// position is a count over earlier tokens, so the result does not depend on scheduling.
#include "config.cuh"
#include "device_util.cuh"
#include "index_math.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

__global__ void map_slots_kernel(const int* __restrict__ topkIdx, long long TK, int K,
                                 const int* __restrict__ offs, const int* __restrict__ slots,
                                 int E, int S, int localRanks, int rank, int* __restrict__ slotIds) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= TK) return;
  const int e = topkIdx[i];
  slotIds[i] = (e < 0 || e >= E) ? -1
                                 : choose_replica(offs, slots, S, localRanks, rank, (int)(i / K), e);
}

__global__ void layout_count_kernel(const int* __restrict__ slotIds, int T, int K, int S, int P,
                                    int R, int* __restrict__ chunkCounts) {
  extern __shared__ int bins[];
  const int nb = P + R;
  for (int b = threadIdx.x; b < nb; b += blockDim.x) bins[b] = 0;
  __syncthreads();
  const int tBegin = blockIdx.x * cfg::kLayoutChunkTokens;
  const int tEnd = min(T, tBegin + cfg::kLayoutChunkTokens);
  for (int t = tBegin + threadIdx.x; t < tEnd; t += blockDim.x) {
    const int* row = slotIds + (long long)t * K;
    for (int k = 0; k < K; ++k) {
      const int p = row[k];
      if (p < 0) continue;
      atomicAdd(&bins[p], 1);
      if (first_of_rank(row, K, S, k)) atomicAdd(&bins[P + rank_of_slot(p, S)], 1);
    }
  }
  __syncthreads();
  for (int b = threadIdx.x; b < nb; b += blockDim.x)
    chunkCounts[(long long)blockIdx.x * nb + b] = bins[b];
}

// One thread per bin: exclusive scan over chunks.
__global__ void layout_scan_bins_kernel(const int* __restrict__ chunkCounts, int nChunks, int nb,
                                        int* __restrict__ chunkBase, int* __restrict__ totals) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nb) return;
  int run = 0;
  for (int c = 0; c < nChunks; ++c) {
    chunkBase[(long long)c * nb + b] = run;
    run += chunkCounts[(long long)c * nb + b];
  }
  totals[b] = run;
}

// One thread: the short serial scans (slots, chunk pair totals).
__global__ void layout_scan_serial_kernel(const int* __restrict__ chunkCounts, int nChunks, int T,
                                          int P, int R, const int* __restrict__ totals,
                                          int* __restrict__ slotPrefix,
                                          int* __restrict__ chunkPairBase,
                                          int* __restrict__ pairOffset) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int run = 0;
  for (int p = 0; p < P; ++p) { slotPrefix[p] = run; run += totals[p]; }
  slotPrefix[P] = run;
  const int nb = P + R;
  run = 0;
  for (int c = 0; c < nChunks; ++c) {
    chunkPairBase[c] = run;
    for (int d = 0; d < R; ++d) run += chunkCounts[(long long)c * nb + P + d];
  }
  chunkPairBase[nChunks] = run;
  pairOffset[T] = run;
}

__global__ void layout_positions_kernel(const int* __restrict__ slotIds, int T, int K, int S, int P,
                                        int R, const int* __restrict__ chunkBase,
                                        const int* __restrict__ chunkPairBase,
                                        int* __restrict__ pos, int* __restrict__ pairPos,
                                        int* __restrict__ pairIdx,
                                        uint8_t* __restrict__ isTokenInRank,
                                        int* __restrict__ pairOffset) {
  __shared__ int sSlots[cfg::kLayoutChunkTokens * cfg::kMaxTopk];
  __shared__ int sPairs[cfg::kLayoutChunkTokens];
  __shared__ unsigned long long sMask[cfg::kLayoutChunkTokens];
  const int c = blockIdx.x;
  const int nb = P + R;
  const int tBegin = c * cfg::kLayoutChunkTokens;
  const int n = min(cfg::kLayoutChunkTokens, T - tBegin);
  for (int i = threadIdx.x; i < n * K; i += blockDim.x)
    sSlots[i] = slotIds[(long long)tBegin * K + i];
  __syncthreads();
  for (int lt = threadIdx.x; lt < cfg::kLayoutChunkTokens; lt += blockDim.x)
  {
    const unsigned long long m = lt < n ? rank_mask(sSlots + lt * K, K, S) : 0ull;
    sMask[lt] = m;
    sPairs[lt] = pair_count_mask(m);
  }
  __syncthreads();
  for (int lt = threadIdx.x; lt < n; lt += blockDim.x) {
    const long long t = tBegin + lt;
    const int* row = sSlots + lt * K;
    int off = chunkPairBase[c];
    for (int i = 0; i < lt; ++i) off += sPairs[i];
    pairOffset[t] = off;
    for (int d = 0; d < R; ++d) isTokenInRank[t * R + d] = 0;
    for (int k = 0; k < K; ++k) {
      const int p = row[k];
      const long long o = t * K + k;
      if (p < 0) { pos[o] = -1; pairPos[o] = -1; pairIdx[o] = -1; continue; }
      const int d = rank_of_slot(p, S);
      pos[o] = chunkBase[(long long)c * nb + p] + count_before_slot(sSlots, K, 0, lt, p);
      pairPos[o] = chunkBase[(long long)c * nb + P + d] + count_before_rank_mask(sMask, 0, lt, d);
      pairIdx[o] = off + pair_rank_index_mask(sMask[lt], d);
      isTokenInRank[t * R + d] = 1;
    }
  }
}

__global__ void recv_offsets_kernel(const int* const* __restrict__ totalsPtrs, int d, int R, int S,
                                    int P, int* __restrict__ recvCounts,
                                    int* __restrict__ slotTotal, int* __restrict__ rowBase,
                                    int* __restrict__ slotBase, int* __restrict__ pairBase,
                                    int* __restrict__ stagingPrefix) {
  extern __shared__ int sc[];  // [R][S]
  for (int i = threadIdx.x; i < R * S; i += blockDim.x) {
    const int r = i / S, ls = i % S;
    sc[i] = totalsPtrs[r][d * S + ls];
    recvCounts[i] = sc[i];
  }
  __syncthreads();
  for (int ls = threadIdx.x; ls < S; ls += blockDim.x) {
    const int base = recv_slot_base(sc, R, S, ls);
    slotTotal[ls] = recv_slot_total(sc, R, S, ls);
    slotBase[ls] = base;
    for (int r = 0; r < R; ++r) rowBase[r * S + ls] = base + recv_src_base(sc, S, r, ls);
  }
  if (threadIdx.x == 0) {
    int run = 0;
    for (int i = 0; i < R * S; ++i) run += sc[i];
    slotBase[S] = run;
    run = 0;
    for (int r = 0; r < R; ++r) { pairBase[r] = run; run += totalsPtrs[r][P + d]; }
    pairBase[R] = run;
    run = 0;
    for (int i = 0; i < R * S; ++i) { stagingPrefix[i] = run; run += sc[i]; }
    stagingPrefix[R * S] = run;
  }
}

}  // namespace

cudaError_t launch_map_slots(const int* topkIdx, int T, int K, const int* expertOffsets,
                             const int* expertSlots, int E, int S, int localRanks, int rank,
                             int* slotIds, cudaStream_t st) {
  const long long TK = (long long)T * K;
  if (TK == 0) return cudaSuccess;
  const int blocks = (int)((TK + cfg::kSmallThreads - 1) / cfg::kSmallThreads);
  map_slots_kernel<<<blocks, cfg::kSmallThreads, 0, st>>>(topkIdx, TK, K, expertOffsets,
                                                          expertSlots, E, S, localRanks, rank,
                                                          slotIds);
  return cudaGetLastError();
}

cudaError_t launch_layout_count(const int* slotIds, int T, int K, int S, int P, int R,
                                int* chunkCounts, cudaStream_t st) {
  const int nChunks = chunk_count(T, cfg::kLayoutChunkTokens);
  if (nChunks == 0) return cudaSuccess;
  const size_t smem = sizeof(int) * (size_t)(P + R);
  layout_count_kernel<<<nChunks, cfg::kLayoutThreads, smem, st>>>(slotIds, T, K, S, P, R,
                                                                  chunkCounts);
  return cudaGetLastError();
}

cudaError_t launch_layout_scan(const int* chunkCounts, int T, int P, int R, int* chunkBase,
                               int* totals, int* slotPrefix, int* chunkPairBase, int* pairOffset,
                               cudaStream_t st) {
  const int nChunks = chunk_count(T, cfg::kLayoutChunkTokens);
  const int nb = P + R;
  layout_scan_bins_kernel<<<(nb + cfg::kSmallThreads - 1) / cfg::kSmallThreads, cfg::kSmallThreads,
                            0, st>>>(chunkCounts, nChunks, nb, chunkBase, totals);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  layout_scan_serial_kernel<<<1, 1, 0, st>>>(chunkCounts, nChunks, T, P, R, totals, slotPrefix,
                                             chunkPairBase, pairOffset);
  return cudaGetLastError();
}

cudaError_t launch_layout_positions(const int* slotIds, int T, int K, int S, int P, int R,
                                    const int* chunkBase, const int* chunkPairBase, int* pos,
                                    int* pairPos, int* pairIdx, uint8_t* isTokenInRank,
                                    int* pairOffset, cudaStream_t st) {
  const int nChunks = chunk_count(T, cfg::kLayoutChunkTokens);
  if (nChunks == 0) return cudaSuccess;
  layout_positions_kernel<<<nChunks, cfg::kLayoutThreads, 0, st>>>(
      slotIds, T, K, S, P, R, chunkBase, chunkPairBase, pos, pairPos, pairIdx, isTokenInRank,
      pairOffset);
  return cudaGetLastError();
}

cudaError_t launch_recv_offsets(const int* const* totalsPtrs, int d, int R, int S, int P,
                                int* recvCounts, int* slotTotal, int* rowBase, int* slotBase,
                                int* pairBase, int* stagingPrefix, cudaStream_t st) {
  const size_t smem = sizeof(int) * (size_t)R * S;
  recv_offsets_kernel<<<1, cfg::kSmallThreads, smem, st>>>(totalsPtrs, d, R, S, P, recvCounts,
                                                           slotTotal, rowBase, slotBase, pairBase,
                                                           stagingPrefix);
  return cudaGetLastError();
}

}  // namespace moeyard
