// moeyard native: the combine kernels' row sum (warp_sum_rows, device_util.cuh) run on the host,
// one lane after another, for the host unit tests. Each lane reads and writes only its own columns
// and the home and pair sums' row and weight lookups are plain array reads here (the fused kernel
// gets them by shuffle), so the 32 lanes in turn compute what one warp does, with the kernels'
// own code and the shipped configuration (config.cuh) of each launcher.
#include <cstdint>

#include "config.cuh"
#include "device_util.cuh"
#include "kernels.cuh"

namespace moeyard {

namespace {

// warp_sum_rows is __host__ __device__, so what it calls must be too (a host lambda would only do
// in the host pass).
struct RowAt {
  const int* rows;
  MY_HD int operator()(int k) const { return rows[k]; }
};
struct WeightAt {
  const float* w;
  MY_HD float operator()(int k) const { return w != nullptr ? w[k] : 0.0f; }
};

template <typename T, int VEC, bool WEIGHTED, int U, bool NODES>
void lanes(const T* y, const int* rows, const float* w, int n, int H, unsigned long long ends,
           T* out) {
  for (int lane = 0; lane < cfg::kWarpSize; ++lane)
    warp_sum_rows<T, VEC, WEIGHTED, U, cfg::kCombineRowsAhead, NODES>(y, H, n, RowAt{rows},
                                                                      WeightAt{w}, ends, out, lane);
}

template <typename T, int VEC>
void pick(const T* y, const int* rows, const float* w, int n, int H, unsigned long long ends,
          bool nodes, T* out) {
  if (w != nullptr) lanes<T, VEC, true, cfg::kCombineUnroll, false>(y, rows, w, n, H, 0ull, out);
  else if (nodes) lanes<T, VEC, false, cfg::nodes_unroll(cfg::kCombineUnroll), true>(y, rows, w, n, H, ends, out);
  else lanes<T, VEC, false, cfg::kCombineUnroll, false>(y, rows, w, n, H, 0ull, out);
}

template <typename T>
void typed(const void* y, const int* rows, const float* w, int n, int H, unsigned long long ends,
           bool nodes, void* out) {
  constexpr int VEC = cfg::kVecBytes / sizeof(T);
  const T* ty = static_cast<const T*>(y);
  T* to = static_cast<T*>(out);
  // the launchers' choice: whole vectors when every row is a multiple of them
  if (H % VEC == 0) pick<T, VEC>(ty, rows, w, n, H, ends, nodes, to);
  else pick<T, 1>(ty, rows, w, n, H, ends, nodes, to);
}

}  // namespace

bool host_warp_sum_rows(int dtype, const void* y, const int* rows, const float* w, int n, int H,
                        unsigned long long runEnds, bool nodes, void* out) {
  switch (dtype) {
    case kBF16: typed<__nv_bfloat16>(y, rows, w, n, H, runEnds, nodes, out); return true;
    case kFP16: typed<__half>(y, rows, w, n, H, runEnds, nodes, out); return true;
    case kFP32: typed<float>(y, rows, w, n, H, runEnds, nodes, out); return true;
    default: return false;
  }
}

}  // namespace moeyard
