// moeyard native: the hold kernel that keeps the GPU busy while the host enqueues a timed call.
//
// A timed call records its start event on a stream and then enqueues its kernels. Recorded on an
// idle GPU, that event fires at once, and the clock then counts the host's launch latency (tens of
// microseconds for eight virtual ranks), which is most of a call at 128 tokens. Holding the stream
// for longer than the enqueue takes puts the start event behind the hold, so that the clock runs
// from the first kernel's start to the last one's end.
#include "kernels.cuh"

namespace moeyard {
namespace {

__global__ void hold_kernel(unsigned long long ns) {
  unsigned long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  for (;;) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (t - t0 >= ns) break;
    __nanosleep(1000);
  }
}

}  // namespace

cudaError_t launch_hold(long long ns, cudaStream_t st) {
  if (ns <= 0) return cudaSuccess;
  hold_kernel<<<1, 1, 0, st>>>((unsigned long long)ns);
  return cudaGetLastError();
}

}  // namespace moeyard
