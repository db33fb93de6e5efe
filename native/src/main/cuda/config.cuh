// moeyard native: every tunable of the CUDA kernels lives in this one header.
// Change a value here, rebuild, and measure; nothing else hard-codes these numbers.
#pragma once

namespace moeyard {
namespace cfg {

// Threads per block of the row-moving kernels (dispatch, combine, permute, sort chunks).
// One warp handles one token row (or one token-rank pair), so a block handles 8 rows.
constexpr int kRowThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kRowsPerBlock = kRowThreads / kWarpSize;

// Layout kernels: tokens per layout chunk (one block per chunk) and threads per layout block.
// The in-chunk position of a selection is counted over the earlier tokens of its chunk, so the
// work per thread grows with the chunk; counts per chunk are scanned across chunks.
constexpr int kLayoutChunkTokens = 64;
constexpr int kLayoutThreads = 64;

// Threads of the small element-wise kernels (map slots, scans).
constexpr int kSmallThreads = 256;

// Vectorised loads / stores: 16 bytes (int4) when every row size and base pointer allow it.
constexpr int kVecBytes = 16;
// Vectors each lane loads before storing them (memory-level parallelism of the row copies).
constexpr int kCopyUnroll = 4;
// Combine: vectors per lane of each row loaded together (columns c, c + 32*VEC, ...), rows of a sum
// whose loads are issued before any of them is added, and the blocks per SM the register budget
// must allow (__launch_bounds__). None changes the order of the sum. The combine is limited by
// loads in flight per SM, and occupancy buys more of them than deeper unrolling: chosen from the
// candidates in combine.cu on an H200 (bench/results/gpu-2026-12-04-h200.md).
constexpr int kCombineUnroll = 4;
constexpr int kCombineRowsAhead = 1;
constexpr int kCombineMinBlocks = 3;
// The home sum on more than one node keeps a second float per column (the total beside the node
// sum), so it loads half as many column vectors at once: at U = 4 it spilled at 3 blocks per SM.
constexpr int nodes_unroll(int u) { return u > 1 ? u / 2 : 1; }
// Required alignment of every device buffer base (cudaMalloc gives 256).
constexpr int kBufferAlignment = 256;

// FP8-E4M3: one float scale per this many channels (DeepEP's convention).
constexpr int kFp8ScaleBlock = 128;

// Shape limits checked on the Java side before any kernel runs.
constexpr int kMaxTopk = 16;
constexpr int kMaxRanks = 64;
// Dynamic shared memory of the layout count kernel is (P + R) ints.
constexpr int kMaxLayoutBins = 12 * 1024;

// Default pipelining chunk (rows) of the peer copies in the unfused baseline.
constexpr int kCopyChunkRows = 1024;

}  // namespace cfg

// Dtype codes shared with io.moeyard.cuda.KernelShape.code.
enum DtypeCode : int { kBF16 = 0, kFP16 = 1, kFP32 = 2, kFP8E4M3 = 3 };

}  // namespace moeyard
