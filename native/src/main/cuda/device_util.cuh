// moeyard native: device helpers shared by the row kernels (vector copies, dtype conversions with
// explicit rounding). Device-only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "arith.cuh"
#include "config.cuh"

namespace moeyard {

__device__ __forceinline__ int warp_id_global() {
  return (int)((blockIdx.x * (long long)blockDim.x + threadIdx.x) / cfg::kWarpSize);
}
__device__ __forceinline__ int lane_id() { return threadIdx.x & (cfg::kWarpSize - 1); }

inline int blocks_for_warps(long long warps) {
  return (int)((warps + cfg::kRowsPerBlock - 1) / cfg::kRowsPerBlock);
}

// Read-only, non-coherent cached load of one vector (the source rows are never written while a
// kernel reads them).
template <typename V>
__device__ __forceinline__ V load_nc(const V* p) { return __ldg(p); }

// Copy one row of nvec vectors with a whole warp: row read once, stored to every non-null dst.
// kCopyUnroll vectors per lane are loaded before they are stored, to keep loads in flight.
template <typename V>
__device__ __forceinline__ void warp_copy_row(const V* __restrict__ src, V* const* dsts, int ndst,
                                              int nvec, int lane) {
  constexpr int U = cfg::kCopyUnroll;
  constexpr int W = cfg::kWarpSize;
  int v = lane;
  for (; v + (U - 1) * W < nvec; v += U * W) {
    V val[U];
#pragma unroll
    for (int u = 0; u < U; ++u) val[u] = load_nc(src + v + u * W);
#pragma unroll
    for (int k = 0; k < cfg::kMaxTopk; ++k)
      if (k < ndst && dsts[k] != nullptr) {
#pragma unroll
        for (int u = 0; u < U; ++u) dsts[k][v + u * W] = val[u];
      }
  }
  for (; v < nvec; v += W) {
    const V val = load_nc(src + v);
#pragma unroll
    for (int k = 0; k < cfg::kMaxTopk; ++k)
      if (k < ndst && dsts[k] != nullptr) dsts[k][v] = val;
  }
}

// VEC elements of T moved as one aligned load / store.
template <typename T, int VEC> struct alignas(sizeof(T) * VEC) Pack { T v[VEC]; };

}  // namespace moeyard
