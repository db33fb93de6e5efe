// moeyard native: host-callable launchers of the kernels in layout.cu, dispatch.cu, combine.cu and
// baseline.cu. Every launcher enqueues on the given stream and returns the launch error (or
// cudaSuccess); none synchronises. Pointers are device pointers; "Ptrs" arguments are device arrays
// of R device pointers, one per rank (the peer buffers a kernel stores into).
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "config.cuh"

namespace moeyard {

// ---- clock.cu: one thread that spins for ns nanoseconds (puts a timed call's start event
// behind the host's enqueue of that call)
cudaError_t launch_hold(long long ns, cudaStream_t st);

// ---- world.cu: the communicator's device path
// table[index] = value, in stream order (a rank's peer-pointer table when an engine's buffer changes).
cudaError_t launch_store_pointer(void** table, int index, void* value, cudaStream_t st);
// *firstBad = the smallest flat index (t * K + k) of an expert id outside [-1, E), repeated in its
// row, or routed with a weight that is not finite; UINT_MAX when there is none.
cudaError_t launch_check_routing(const int* topkIdx, const float* topkWeights, int T, int K, int E,
                                 unsigned int* firstBad, cudaStream_t st);

// ---- layout.cu (per source rank, like DeepEP's get_dispatch_layout) ----
cudaError_t launch_map_slots(const int* topkIdx, int T, int K, const int* expertOffsets,
                             const int* expertSlots, int E, int S, int localRanks, int rank,
                             int* slotIds, cudaStream_t st);
// chunkCounts[nChunks][P + R]: per chunk of tokens, selections per slot, then tokens per rank.
cudaError_t launch_layout_count(const int* slotIds, int T, int K, int S, int P, int R,
                                int* chunkCounts, cudaStream_t st);
// chunkBase (exclusive scan over chunks), totals[P + R] (numTokensPerSlot, numTokensPerRank),
// slotPrefix[P + 1], chunkPairBase[nChunks + 1], pairOffset[T] = number of pairs.
cudaError_t launch_layout_scan(const int* chunkCounts, int T, int P, int R, int* chunkBase,
                               int* totals, int* slotPrefix, int* chunkPairBase, int* pairOffset,
                               cudaStream_t st);
// pos[T*K] (j of each selection), pairPos[T*K] (position of the token among the tokens this rank
// sends to the selection's destination rank), pairIdx[T*K] (home pair index), isTokenInRank[T*R],
// pairOffset[0..T).
cudaError_t launch_layout_positions(const int* slotIds, int T, int K, int S, int P, int R,
                                    const int* chunkBase, const int* chunkPairBase, int* pos,
                                    int* pairPos, int* pairIdx, uint8_t* isTokenInRank,
                                    int* pairOffset, cudaStream_t st);
// On destination rank d, after every rank's layout: recvCounts[R*S], slotTotal[S], rowBase[R*S],
// slotBase[S + 1], pairBase[R + 1], stagingPrefix[R*S + 1].
cudaError_t launch_recv_offsets(const int* const* totalsPtrs, int d, int R, int S, int P,
                                int* recvCounts, int* slotTotal, int* rowBase, int* slotBase,
                                int* pairBase, int* stagingPrefix, cudaStream_t st);

// ---- dispatch.cu (fused: one warp per token, row read once, stored into every destination) ----
struct DispatchArgs {
  const void* x;
  const float* scales;  // FP8 only, else null
  const float* topkW;
  const int* slotIds;
  const int* pos;
  const int* pairPos;
  const int* pairIdx;
  int T, K, S, R, rank;
  int rowBytes;
  int scaleCols;  // H / 128 for FP8, else 0
  void* const* recvX;
  float* const* recvScales;
  float* const* recvW;
  const int* const* rowBase;
  const int* const* pairBase;
  int* const* pairSrc;
  int* const* pairHome;
  int* const* pairToken;
  int* const* pairRows;  // [pairs][K], ascending rows, -1 padded
};
cudaError_t launch_dispatch_fused(const DispatchArgs& a, cudaStream_t st);
cudaError_t launch_dispatch_fused_simple(const DispatchArgs& a, cudaStream_t st);  // simple.cu

// ---- combine.cu ----
// On expert rank d: one warp per received token-rank pair; weighted, fixed-order float sum of its
// rows; rounded partial stored at home: partials[src][home][H].
// variant: 0 the defaults, >= 2 a tuning candidate (combine.cu)
cudaError_t launch_combine_fused(int variant, int dtype, const void* y, const float* recvW, const int* pairSrc,
                                 const int* pairHome, const int* pairRows, int numPairs, int K,
                                 int H, void* const* partialPtrs, cudaStream_t st);
// At home, one token per warp: its partials [pairOffset[t], pairOffset[t+1]) in ascending
// destination-rank order. One node (R == L): out[t] = round(their float sum). More nodes: each
// node's run summed in float and rounded, then those node partials summed in node order and
// rounded; the runs follow from the token's slotIds row (T x K, the home rank's layout).
struct HomeArgs {
  const void* partials;
  const int* pairOffset;
  const int* slotIds;
  int T, K, S, R, L, H;  // L: ranks per node
  void* out;
};
// The shape limits the home kernels rely on (rank masks of 64 bits, rows of at most kMaxTopk).
inline bool home_args_valid(const HomeArgs& h) {
  return h.K >= 1 && h.K <= cfg::kMaxTopk && h.S >= 1 && h.R >= 1 && h.R <= cfg::kMaxRanks &&
         h.L >= 1 && h.R % h.L == 0;
}
cudaError_t launch_combine_home(int variant, int dtype, const HomeArgs& h, cudaStream_t st);
// simple.cu: the same two, untuned
cudaError_t launch_combine_fused_simple(int dtype, const void* y, const float* recvW, const int* pairSrc,
                                        const int* pairHome, const int* pairRows, int numPairs, int K,
                                        int H, void* const* partialPtrs, cudaStream_t st);
cudaError_t launch_combine_home_simple(int dtype, const HomeArgs& h, cudaStream_t st);

// ---- host_check.cu: warp_sum_rows on the host, lane by lane (host unit tests; no CUDA call) ----
// y: rows of H elements (16-byte aligned); rows[k] the k-th row summed; w: the weights (the fused
// combine's pair sum) or null (the home sum, with nodes: fold where runEnds says). Returns false
// for a dtype other than BF16 / FP16 / FP32.
bool host_warp_sum_rows(int dtype, const void* y, const int* rows, const float* w, int n, int H,
                        unsigned long long runEnds, bool nodes, void* out);

// ---- baseline.cu (unfused, Megatron alltoall style) ----
cudaError_t launch_permute(const void* x, const float* scales, int scaleCols, const float* topkW,
                           const int* slotIds, const int* pos, const int* slotPrefix, int T, int K,
                           int rowBytes, void* permX, float* permScales, float* permW,
                           cudaStream_t st);
cudaError_t launch_sort_chunks(const void* stagingX, const float* stagingScales,
                               const float* stagingW, const int* stagingPrefix, const int* rowBase,
                               int R, int S, int numRows, int rowBytes, int scaleCols, void* recvX,
                               float* recvScales, float* recvW, cudaStream_t st);
cudaError_t launch_sort_chunks_back(const void* y, const int* stagingPrefix, const int* rowBase,
                                    int R, int S, int numRows, int rowBytes, void* stagingY,
                                    cudaStream_t st);
// The home reduction of the unfused path, in the fused path's order (nodes included; L: ranks per
// node, R: ranks).
cudaError_t launch_unpermute(int dtype, const void* returnY, const float* topkW, const int* slotIds,
                             const int* pos, const int* slotPrefix, int T, int K, int S, int R,
                             int L, int H, void* out, cudaStream_t st);

}  // namespace moeyard
