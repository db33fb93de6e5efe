// moeyard native: the small kernels of the communicator's device path (io.moeyard.cuda.CudaWorld).
//
// store_pointer: an engine may hand each dispatch its own receive rows ("into"); the peers' kernels
// find every destination's rows through a device table of pointers, so the table entry has to change
// in stream order, before the kernels that read it and after those that read the old value. A
// one-thread kernel does that without a host sync (a host-to-device copy of pageable memory would
// block the calling thread).
//
// check_routing: the routing lives in device memory on this path, so its expert ids are checked on
// the device. The first bad entry's flat index lands in one word that goes to the host with the
// layout counts (the one read-back of a dispatch), so a bad id costs no extra sync and every rank
// learns of it before any row is written.
#include <climits>

#include "config.cuh"
#include "kernels.cuh"

namespace moeyard {
namespace {

__global__ void store_pointer_kernel(void** table, int index, void* value) { table[index] = value; }

// One thread per (t, k): bad when the id is outside [-1, E), when the same expert appears earlier
// in row t, or when a routed entry's weight is not finite (the cpu backend's Routing rules).
__global__ void check_routing_kernel(const int* __restrict__ topkIdx,
                                     const float* __restrict__ topkWeights, long long TK, int K,
                                     int E, unsigned int* __restrict__ firstBad) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= TK) return;
  const int e = topkIdx[i];
  bool bad = e < -1 || e >= E || (e >= 0 && !isfinite(topkWeights[i]));
  if (!bad && e >= 0) {
    for (long long q = i - i % K; q < i; ++q) {
      if (topkIdx[q] == e) { bad = true; break; }
    }
  }
  if (bad) atomicMin(firstBad, (unsigned int)i);
}

}  // namespace

cudaError_t launch_store_pointer(void** table, int index, void* value, cudaStream_t st) {
  store_pointer_kernel<<<1, 1, 0, st>>>(table, index, value);
  return cudaGetLastError();
}

cudaError_t launch_check_routing(const int* topkIdx, const float* topkWeights, int T, int K, int E,
                                 unsigned int* firstBad, cudaStream_t st) {
  // UINT_MAX: no bad entry (T * K fits an int, so every real index is smaller)
  cudaError_t e = cudaMemsetAsync(firstBad, 0xff, sizeof(unsigned int), st);
  if (e != cudaSuccess) return e;
  const long long TK = (long long)T * K;
  if (TK == 0) return cudaSuccess;
  const int blocks = (int)((TK + cfg::kSmallThreads - 1) / cfg::kSmallThreads);
  check_routing_kernel<<<blocks, cfg::kSmallThreads, 0, st>>>(topkIdx, topkWeights, TK, K, E,
                                                               firstBad);
  return cudaGetLastError();
}

}  // namespace moeyard
