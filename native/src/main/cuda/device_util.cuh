// moeyard native: device helpers shared by the row kernels (vector copies, dtype conversions with
// explicit rounding). Device-only, except warp_sum_rows (and load_once), which host_check.cu also
// runs on the host, lane by lane, for the host unit tests.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// Host: calls f(V{}) with V the widest of int4, int2, int, short, char whose size divides
// rowBytes, the vector a row kernel moves rows in (rows are only as aligned as their size).
template <typename F>
inline cudaError_t with_row_vector(long long rowBytes, F&& f) {
  if (rowBytes % 16 == 0) return f(int4{});
  if (rowBytes % 8 == 0) return f(int2{});
  if (rowBytes % 4 == 0) return f(int{});
  if (rowBytes % 2 == 0) return f(short{});
  return f(char{});
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

// Load of a vector that this kernel reads once: read-only path, no L1 allocation (the rows of a
// combine are each read by one warp, once).
template <typename P>
MY_HD P load_once(const P* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(P) == 16) {
    int4 v;
    asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    P r;
    memcpy(&r, &v, sizeof r);
    return r;
  } else {
    return *p;
  }
#else
  return *p;
#endif
}

// One row of nvec vectors, read once (load_once) by a whole warp and stored to every destination
// i < n that dest(i, d) takes (true, with its row in d): kCopyUnroll vectors per lane are loaded
// before any is stored, to keep loads in flight. Every lane calls dest(i, d) alike, for every i,
// so dest may shuffle. (A bool and a pointer, not a pointer that may be null: a destination
// skipped by its own test costs no second test of the pointer.)
// The fused dispatch (destinations: its selections' rows) and the relay's pack (the remote nodes'
// messages) share it.
template <typename V, typename Dest>
__device__ __forceinline__ void warp_scatter_row(const V* __restrict__ src, int nvec, int lane, int n, Dest dest) {
  constexpr int U = cfg::kCopyUnroll;
  constexpr int W = cfg::kWarpSize;
  int base = 0;
  for (; base + U * W <= nvec; base += U * W) {
    V val[U];
#pragma unroll
    for (int u = 0; u < U; ++u) val[u] = load_once(src + base + u * W + lane);
    for (int i = 0; i < n; ++i) {
      V* d;
      if (dest(i, d)) {
#pragma unroll
        for (int u = 0; u < U; ++u) d[base + u * W + lane] = val[u];
      }
    }
  }
  for (; base < nvec; base += W) {
    const int v = base + lane;
    V val;
    if (v < nvec) val = load_once(src + v);
    for (int i = 0; i < n; ++i) {
      V* d;
      if (dest(i, d) && v < nvec) d[v] = val;
    }
  }
}

// Row r of y (rows of H elements), or r itself when the caller's rowOf gives pointers (the relay's
// home sum reads two buffers).
template <typename T, typename R>
MY_HD const T* row_pointer(const T* y, R r, int H) {
  if constexpr (std::is_pointer<R>::value) return r;
  else return y + (long long)r * H;
}

// One warp sums n rows of H elements of T into dst, in ascending k, in float: row k is
// y + rowOf(k) * H; with WEIGHTED each element is combine_step(acc, wOf(k), y), else add_rn(acc, y);
// the sum is rounded once to T. Lane l handles columns l*VEC + j*32*VEC. U and A are
// cfg::kCombineUnroll and cfg::kCombineRowsAhead outside tuning sweeps; rowOf may also return row
// pointers (row_pointer). rowOf and wOf are called
// by every lane of the warp together (they may shuffle). For each group of
// U such columns the loads of A rows are issued before any of them is
// added (the warp has few rows and many columns, so this is what keeps loads in flight); the adds
// still run in ascending k, so the result is bit for bit that of one row at a time.
// With NODES (the home sum on more than one node) row k is added to a node sum, and where bit k of
// runEnds is set that sum is rounded to T and added to the total (fold_node); the total, rounded
// once, is the result. n <= 64 then (one row per rank).
template <typename T, int VEC, bool WEIGHTED, int U, int A, bool NODES, typename RowOf,
          typename WeightOf>
MY_HD void warp_sum_rows(const T* __restrict__ y, int H, int n, RowOf rowOf, WeightOf wOf,
                         unsigned long long runEnds, T* __restrict__ dst, int lane) {
  using P = Pack<T, VEC>;
  constexpr int STEP = cfg::kWarpSize * VEC;
  // The column loop is the same for every lane (rowOf / wOf may shuffle across the warp); each
  // lane guards its own columns.
  for (int base = 0; base < H; base += STEP * U) {
    const int c0 = base + lane * VEC;
    float acc[U][VEC];
    float total[U][VEC];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[u][v] = total[u][v] = 0.0f;
    for (int k0 = 0; k0 < n; k0 += A) {
      P in[A][U];
      float w[A];
#pragma unroll
      for (int a = 0; a < A; ++a) {
        if (k0 + a < n) {
          const T* row = row_pointer(y, rowOf(k0 + a), H);
          w[a] = WEIGHTED ? wOf(k0 + a) : 0.0f;
#pragma unroll
          for (int u = 0; u < U; ++u)
            if (c0 + u * STEP < H) in[a][u] = load_once(reinterpret_cast<const P*>(row + c0 + u * STEP));
        }
      }
#pragma unroll
      for (int a = 0; a < A; ++a) {
        if (k0 + a < n) {
#pragma unroll
          for (int u = 0; u < U; ++u)
            if (c0 + u * STEP < H) {
#pragma unroll
              for (int v = 0; v < VEC; ++v) {
                const float x = Conv<T>::to_float(in[a][u].v[v]);
                acc[u][v] = WEIGHTED ? combine_step(acc[u][v], w[a], x) : add_rn(acc[u][v], x);
              }
            }
          if (NODES && ((runEnds >> (k0 + a)) & 1ull)) {
#pragma unroll
            for (int u = 0; u < U; ++u)
#pragma unroll
              for (int v = 0; v < VEC; ++v) fold_node<T>(total[u][v], acc[u][v]);
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (c0 + u * STEP < H) {
        P out;
#pragma unroll
        for (int v = 0; v < VEC; ++v) out.v[v] = Conv<T>::from_float(NODES ? total[u][v] : acc[u][v]);
        *reinterpret_cast<P*>(dst + c0 + u * STEP) = out;
      }
  }
}

}  // namespace moeyard
