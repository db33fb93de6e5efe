// moeyard native: the combine kernels' row sum (warp_sum_rows, device_util.cuh) run on the host,
// one lane after another, for the host unit tests. Each lane reads and writes only its own columns
// and the home and pair sums' row and weight lookups are plain array reads here (the fused kernel
// gets them by shuffle), so the 32 lanes in turn compute what one warp does, with the kernels'
// own code and the shipped configuration (config.cuh) of each launcher.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "config.cuh"
#include "device_util.cuh"
#include "kernels.cuh"
#include "relay_math.cuh"

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

// Rows of H elements of T, 256-byte aligned like cudaMalloc's (the kernels' vector loads need it).
template <typename T>
std::unique_ptr<T, void (*)(void*)> rows_of(int n, int H) {
  const size_t bytes = ((size_t)n * H * sizeof(T) + 255) / 256 * 256 + 256;
  return std::unique_ptr<T, void (*)(void*)>(static_cast<T*>(std::aligned_alloc(256, bytes)), std::free);
}

// The relayed combine of one token, level by level, each level the kernels' warp_sum_rows (lanes):
// pair partials on the expert ranks, node partials on the relays (relay_node_sum), the home sum
// over relay_home_term's terms (relay_home).
template <typename T>
void relay_token(const T* y, const float* w, const int* groups, const int* groupRanks, int nG, int R,
                 int L, int home, int H, T* out) {
  const int node = node_of_rank(home, L);
  auto partials = rows_of<T>(nG, H);
  unsigned long long mask = 0ull;
  int row = 0;
  for (int g = 0; g < nG; ++g) {
    std::vector<int> rows(groups[g]);
    for (int i = 0; i < groups[g]; ++i) rows[i] = row + i;
    typed<T>(y, rows.data(), w + row, groups[g], H, 0ull, false, partials.get() + (long long)g * H);
    row += groups[g];
    mask |= 1ull << groupRanks[g];
  }
  const int M = R / L;
  auto nodePartials = rows_of<T>(M, H);
  for (int m = 0; m < M; ++m) {
    if (m == node) continue;
    std::vector<int> rows;
    for (int g = 0; g < nG; ++g)
      if (node_of_rank(groupRanks[g], L) == m) rows.push_back(g);  // ascending rank
    if (!rows.empty())
      typed<T>(partials.get(), rows.data(), nullptr, (int)rows.size(), H, 0ull, false,
               nodePartials.get() + (long long)m * H);
  }
  const int n = relay_home_terms(mask, node, R, L);
  auto terms = rows_of<T>(n, H);
  std::vector<int> rows(n);
  for (int k = 0; k < n; ++k) {
    int pi;
    const int m = relay_home_term(mask, node, R, L, k, &pi);
    // a token's pairs are its groups, in ascending rank: pair index pi is group pi
    const T* src = pi >= 0 ? partials.get() + (long long)pi * H : nodePartials.get() + (long long)m * H;
    std::memcpy(terms.get() + (long long)k * H, src, sizeof(T) * H);
    rows[k] = k;
  }
  typed<T>(terms.get(), rows.data(), nullptr, n, H, relay_home_run_ends(mask, node, R, L), true, out);
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

bool host_relay_combine_token(int dtype, const void* y, const float* w, const int* groups,
                              const int* groupRanks, int nGroups, int R, int L, int home, int H,
                              void* out) {
  switch (dtype) {
    case kBF16:
      relay_token(static_cast<const __nv_bfloat16*>(y), w, groups, groupRanks, nGroups, R, L, home, H,
                  static_cast<__nv_bfloat16*>(out));
      return true;
    case kFP16:
      relay_token(static_cast<const __half*>(y), w, groups, groupRanks, nGroups, R, L, home, H,
                  static_cast<__half*>(out));
      return true;
    case kFP32:
      relay_token(static_cast<const float*>(y), w, groups, groupRanks, nGroups, R, L, home, H,
                  static_cast<float*>(out));
      return true;
    default: return false;
  }
}

}  // namespace moeyard
