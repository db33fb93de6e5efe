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
  // The node-level path: token t's row is x's row rowIndex[t * rowStride] (a relayed message's
  // rows; -1: the token is not in it) instead of row t, and only destinations in [destLo, destHi)
  // are stored to (one node). The defaults are the single-hop dispatch; dispatch.cu only.
  const int* rowIndex = nullptr;
  int rowStride = 1;
  int destLo = 0;
  int destHi = cfg::kMaxRanks;
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

// ---- relay.cu: the node-level (two-hop) path on more than one node (relay_math.cuh) ----
// nodeRow[t * M + m]: token t's row in this source's message to node m (its index among the
// source's tokens with a pair on m), or -1; nodeCounts[m]: those tokens. M = R / L blocks.
cudaError_t launch_node_rows(const int* slotIds, int T, int K, int S, int R, int L, int* nodeRow,
                             int* nodeCounts, cudaStream_t st);
// The messages of one source to every remote node m with nodeCounts[m] > 0, each in its slot of
// sendArea (remote_slot(m, node) * slotBytes): routing, rows, FP8 scales.
struct RelayPackArgs {
  const void* x;
  const float* scales;  // FP8 only, else null
  const int* topkIdx;
  const float* topkW;
  const int* nodeRow;
  const int* nodeCounts;
  int T, K, M, node;
  int rowBytes;
  int scaleCols;
  char* sendArea;
  long long slotBytes;
};
cudaError_t launch_relay_pack(const RelayPackArgs& a, cudaStream_t st);
// Where the pairs of each source rank go when not home (passed by value, per call): rows[src] the
// staging of src's relay on this node (null: src is on this node, its pairs go home), pair i at
// row row[src] + i.
struct RelayStage {
  void* rows[cfg::kMaxRanks];
  int row[cfg::kMaxRanks];
};
cudaError_t launch_relay_combine_send(int dtype, const void* y, const float* recvW, const int* pairSrc,
                                      const int* pairHome, const int* pairRows, int numPairs, int K,
                                      int H, void* const* partialPtrs, const RelayStage& stage,
                                      cudaStream_t st);
// At relay of node m, for one relayed source (its recomputed layout: slotIds, pairPos, pairsTo =
// totals + P, nodeRow): out[nodeRow[t][m]] = the node partial of token t from staging.
struct RelayNodeSumArgs {
  const void* staging;
  const int* slotIds;
  const int* pairPos;
  const int* pairsTo;
  const int* nodeRow;
  int T, K, S, R, L, M, m, H;
  void* out;
};
cudaError_t launch_relay_node_sum(int dtype, const RelayNodeSumArgs& a, cudaStream_t st);
// At home (node `node`): out[t] = its own node's partials (partials, at pairOffset[t] + pair index)
// and the node partials received from each remote node m (nodeRecv, slot remote_slot(m, node) of
// slotTokens rows, row nodeRow[t][m]), summed in node order.
struct RelayHomeArgs {
  const void* partials;
  const void* nodeRecv;
  const int* pairOffset;
  const int* slotIds;
  const int* nodeRow;
  int T, K, S, R, L, M, node, H;
  int slotTokens;
  void* out;
};
cudaError_t launch_relay_home(int dtype, const RelayHomeArgs& a, cudaStream_t st);
// host_check.cu: one token's relayed combine on the host, lane by lane (host unit tests): pair
// partials (weighted sums of rows), the node partial of every remote node from its ranks' partials,
// then the home sum of the own node's partials and the node partials in node order. rows: the
// token's rows grouped by pair (groups[g] rows of destination rank groupRanks[g], ascending).
bool host_relay_combine_token(int dtype, const void* y, const float* w, const int* groups,
                              const int* groupRanks, int nGroups, int R, int L, int home, int H,
                              void* out);

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
