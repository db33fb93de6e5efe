// moeyard native: JNI glue for io.moeyard.cuda.NativeKernels.
//
// Ownership: this library is the one owner of every CUDA resource the Java side uses (device
// memory, streams, events); Java holds them as opaque longs and frees them through it. Every CUDA
// call is checked; a failure throws io.moeyard.cuda.CudaException naming the call and the CUDA
// error, never aborts the JVM. The status queries (driverProbe, deviceCount) never throw: without a
// driver they return the reason, so the Java side can say "CUDA backend unavailable: <reason>".
//
// The host* entry points run the index math of index_math.cuh on Java arrays, on the host, with
// no CUDA call at all: they work on machines without a GPU or driver (CI) and are what the host
// unit tests exercise.
#include <jni.h>
#include <dlfcn.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "arith.cuh"
#include "config.cuh"
#include "index_math.cuh"
#include "kernels.cuh"
#include "relay_math.cuh"

using namespace moeyard;

#ifndef MOEYARD_VERSION
#define MOEYARD_VERSION "dev"
#endif

namespace {

void throwJava(JNIEnv* env, const char* cls, const std::string& msg) {
  if (env->ExceptionCheck()) return;
  jclass c = env->FindClass(cls);
  if (c == nullptr) return;  // NoClassDefFoundError already pending
  env->ThrowNew(c, msg.c_str());
}

std::string cudaMessage(const char* what, cudaError_t e) {
  std::string s = what;
  s += " failed: ";
  s += cudaGetErrorName(e);
  s += ": ";
  s += cudaGetErrorString(e);
  return s;
}

// Returns true when ok; otherwise throws CudaException and returns false.
bool check(JNIEnv* env, cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  throwJava(env, "io/moeyard/cuda/CudaException", cudaMessage(what, e));
  return false;
}

bool illegal(JNIEnv* env, const std::string& msg) {
  throwJava(env, "java/lang/IllegalArgumentException", msg);
  return false;
}

template <typename T> T* ptr(jlong p) { return reinterpret_cast<T*>(static_cast<intptr_t>(p)); }
cudaStream_t stream(jlong s) { return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(s)); }
cudaEvent_t event(jlong e) { return reinterpret_cast<cudaEvent_t>(static_cast<intptr_t>(e)); }
jlong handle(const void* p) { return static_cast<jlong>(reinterpret_cast<intptr_t>(p)); }

// RAII view of a Java int array (copied in, optionally copied back).
struct IntArray {
  JNIEnv* env;
  jintArray arr;
  jint* data = nullptr;
  jsize len = 0;
  bool writeBack;
  IntArray(JNIEnv* e, jintArray a, bool wb = false) : env(e), arr(a), writeBack(wb) {
    if (a != nullptr) {
      len = env->GetArrayLength(a);
      data = env->GetIntArrayElements(a, nullptr);
    }
  }
  ~IntArray() {
    if (data != nullptr) env->ReleaseIntArrayElements(arr, data, writeBack ? 0 : JNI_ABORT);
  }
  int* get() { return reinterpret_cast<int*>(data); }
};

bool needLen(JNIEnv* env, const IntArray& a, long long n, const char* name) {
  if (a.data == nullptr) return illegal(env, std::string(name) + " is null");
  if (a.len < n)
    return illegal(env, std::string(name) + " has " + std::to_string(a.len) + " elements, needs " +
                            std::to_string(n));
  return true;
}

jintArray newIntArray(JNIEnv* env, const std::vector<int>& v) {
  jintArray a = env->NewIntArray((jsize)v.size());
  if (a != nullptr && !v.empty()) env->SetIntArrayRegion(a, 0, (jsize)v.size(), v.data());
  return a;
}

// Host emulation of the device layout pipeline (layout_count -> layout_scan -> layout_positions)
// with the same index functions and an arbitrary chunk size.
void hostLayout(const int* slotIds, int T, int K, int S, int P, int R, int chunk, int* pos,
                int* pairPos, int* pairIdx, int* pairOffset, int* totals, int* slotPrefix,
                int8_t* isTokenInRank) {
  const int nb = P + R;
  const int nChunks = chunk_count(T, chunk);
  std::vector<int> counts((size_t)nChunks * nb, 0), base((size_t)nChunks * nb, 0);
  for (int c = 0; c < nChunks; ++c) {
    for (long long t = chunk_begin(c, chunk); t < chunk_end(c, T, chunk); ++t) {
      const int* row = slotIds + t * K;
      for (int k = 0; k < K; ++k) {
        if (row[k] < 0) continue;
        counts[(size_t)c * nb + row[k]]++;
        if (first_of_rank(row, K, S, k)) counts[(size_t)c * nb + P + rank_of_slot(row[k], S)]++;
      }
    }
  }
  for (int b = 0; b < nb; ++b) {
    int run = 0;
    for (int c = 0; c < nChunks; ++c) { base[(size_t)c * nb + b] = run; run += counts[(size_t)c * nb + b]; }
    totals[b] = run;
  }
  int run = 0;
  for (int p = 0; p < P; ++p) { slotPrefix[p] = run; run += totals[p]; }
  slotPrefix[P] = run;
  std::vector<int> chunkPairBase(nChunks + 1, 0);
  run = 0;
  for (int c = 0; c < nChunks; ++c) {
    chunkPairBase[c] = run;
    for (int d = 0; d < R; ++d) run += counts[(size_t)c * nb + P + d];
  }
  chunkPairBase[nChunks] = run;
  pairOffset[T] = run;
  for (int c = 0; c < nChunks; ++c) {
    const long long tb = chunk_begin(c, chunk);
    const int* cs = slotIds + tb * K;
    std::vector<unsigned long long> masks;
    for (long long t = tb; t < chunk_end(c, T, chunk); ++t) masks.push_back(rank_mask(slotIds + t * K, K, S));
    int off = chunkPairBase[c];
    for (long long t = tb; t < chunk_end(c, T, chunk); ++t) {
      const int lt = (int)(t - tb);
      const int* row = slotIds + t * K;
      pairOffset[t] = off;
      for (int d = 0; d < R; ++d) isTokenInRank[t * R + d] = 0;
      for (int k = 0; k < K; ++k) {
        const int p = row[k];
        const long long o = t * K + k;
        if (p < 0) { pos[o] = -1; pairPos[o] = -1; pairIdx[o] = -1; continue; }
        const int d = rank_of_slot(p, S);
        pos[o] = base[(size_t)c * nb + p] + count_before_slot(cs, K, 0, lt, p);
        pairPos[o] = base[(size_t)c * nb + P + d] + count_before_rank_mask(masks.data(), 0, lt, d);
        pairIdx[o] = off + pair_rank_index_mask(masks[lt], d);
        isTokenInRank[t * R + d] = 1;
      }
      off += pair_count_mask(masks[lt]);
    }
  }
}

// One token's combine on the host with the kernels' arithmetic: rows grouped by token-rank pair
// (groups[g] rows each, in order), each pair's weighted float sum rounded to T (the expert rank's
// partial), then the partials summed in order in float (the home sum); with nodes, where bit g of
// runEnds is set the home sum so far is a node partial, folded into the total (fold_node), as the
// home kernel does. The result rounded to T.
template <typename T>
void hostCombineToken(const T* y, const float* w, const int* groups, int nGroups,
                      unsigned long long runEnds, bool nodes, int H, T* out) {
  for (int c = 0; c < H; ++c) {
    float total = 0.0f, home = 0.0f;
    int row = 0;
    for (int g = 0; g < nGroups; ++g) {
      float acc = 0.0f;
      for (int i = 0; i < groups[g]; ++i, ++row)
        acc = combine_step(acc, w[row], Conv<T>::to_float(y[(long long)row * H + c]));
      home = add_rn(home, round_through<T>(acc));
      if (nodes && ((runEnds >> g) & 1ull)) fold_node<T>(total, home);
    }
    out[c] = Conv<T>::from_float(nodes ? total : home);
  }
}

}  // namespace

#define JNI_FN(ret, name) extern "C" JNIEXPORT ret JNICALL Java_io_moeyard_cuda_NativeKernels_##name

// ------------------------------------------------------------------------------------------------
// Status (never throw)
// ------------------------------------------------------------------------------------------------

JNI_FN(jstring, version)(JNIEnv* env, jclass) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "moeyard_cuda %s (CUDA runtime %d, static; built for sm_90 + compute_90 PTX)",
                MOEYARD_VERSION, CUDART_VERSION);
  return env->NewStringUTF(buf);
}

JNI_FN(jint, runtimeVersion)(JNIEnv*, jclass) { return CUDART_VERSION; }

// null when libcuda.so.1 (the driver) can be loaded, else the loader's reason.
JNI_FN(jstring, driverProbe)(JNIEnv* env, jclass) {
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) {
    const char* err = dlerror();
    std::string s = "libcuda.so.1 (the NVIDIA driver) cannot be loaded: ";
    s += err != nullptr ? err : "unknown reason";
    return env->NewStringUTF(s.c_str());
  }
  dlclose(h);
  return nullptr;
}

// >= 0: number of devices; < 0: -(cudaError_t) of cudaGetDeviceCount.
JNI_FN(jint, deviceCount)(JNIEnv*, jclass) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state
    return -(jint)e;
  }
  return n;
}

JNI_FN(jstring, errorString)(JNIEnv* env, jclass, jint code) {
  cudaError_t e = (cudaError_t)code;
  std::string s = cudaGetErrorName(e);
  s += ": ";
  s += cudaGetErrorString(e);
  return env->NewStringUTF(s.c_str());
}

JNI_FN(jstring, deviceName)(JNIEnv* env, jclass, jint dev) {
  cudaDeviceProp prop;
  if (!check(env, cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties")) return nullptr;
  char buf[300];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                prop.totalGlobalMem / 1073741824.0);
  return env->NewStringUTF(buf);
}

// {maxTopk, maxRanks, maxLayoutBins, layoutChunkTokens, rowThreads, fp8ScaleBlock, vecBytes}
JNI_FN(jintArray, limits)(JNIEnv* env, jclass) {
  return newIntArray(env, {cfg::kMaxTopk, cfg::kMaxRanks, cfg::kMaxLayoutBins,
                           cfg::kLayoutChunkTokens, cfg::kRowThreads, cfg::kFp8ScaleBlock,
                           cfg::kVecBytes});
}

// ------------------------------------------------------------------------------------------------
// Device, memory, streams, events
// ------------------------------------------------------------------------------------------------

JNI_FN(void, setDevice)(JNIEnv* env, jclass, jint dev) { check(env, cudaSetDevice(dev), "cudaSetDevice"); }
JNI_FN(void, deviceSynchronize)(JNIEnv* env, jclass) { check(env, cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

JNI_FN(jlong, malloc)(JNIEnv* env, jclass, jlong bytes) {
  if (bytes < 0) { illegal(env, "negative allocation"); return 0; }
  void* p = nullptr;
  // Never a zero-byte allocation: empty buffers still get a valid, aligned pointer.
  if (!check(env, cudaMalloc(&p, bytes == 0 ? cfg::kBufferAlignment : (size_t)bytes), "cudaMalloc"))
    return 0;
  return handle(p);
}

JNI_FN(void, free)(JNIEnv* env, jclass, jlong p) {
  if (p != 0) check(env, cudaFree(ptr<void>(p)), "cudaFree");
}

JNI_FN(void, memsetAsync)(JNIEnv* env, jclass, jlong p, jint value, jlong bytes, jlong st) {
  if (bytes > 0) check(env, cudaMemsetAsync(ptr<void>(p), value, (size_t)bytes, stream(st)), "cudaMemsetAsync");
}

// {free, total} bytes of the current device (cudaMemGetInfo): what a test watches to see that a
// steady-state call allocates nothing.
JNI_FN(jlongArray, memGetInfo)(JNIEnv* env, jclass) {
  size_t freeB = 0, totalB = 0;
  if (!check(env, cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo")) return nullptr;
  jlongArray out = env->NewLongArray(2);
  if (out == nullptr) return nullptr;
  jlong v[2] = {(jlong)freeB, (jlong)totalB};
  env->SetLongArrayRegion(out, 0, 2, v);
  return out;
}

// What an address is to CUDA: {cudaMemoryType (0 unregistered host, 1 host, 2 device, 3 managed),
// device}. The device path refuses addresses that are not device or managed memory of its device.
JNI_FN(jintArray, pointerKind)(JNIEnv* env, jclass, jlong p) {
  cudaPointerAttributes a{};
  cudaError_t e = cudaPointerGetAttributes(&a, ptr<void>(p));
  if (e == cudaErrorInvalidValue) {
    cudaGetLastError();  // not sticky; clear it so the next call does not see it
    a.type = cudaMemoryTypeUnregistered;
    a.device = -1;
  } else if (!check(env, e, "cudaPointerGetAttributes")) {
    return nullptr;
  }
  jintArray out = env->NewIntArray(2);
  if (out == nullptr) return nullptr;
  jint v[2] = {(jint)a.type, (jint)a.device};
  env->SetIntArrayRegion(out, 0, 2, v);
  return out;
}

JNI_FN(void, storePointer)(JNIEnv* env, jclass, jlong table, jint index, jlong value, jlong st) {
  if (index < 0) { illegal(env, "negative table index"); return; }
  check(env, launch_store_pointer(ptr<void*>(table), index, ptr<void>(value), stream(st)), "store_pointer");
}

JNI_FN(void, checkRouting)(JNIEnv* env, jclass, jlong topkIdx, jlong topkWeights, jint T, jint K, jint E,
                           jlong firstBad, jlong st) {
  if (T < 0 || K <= 0) { illegal(env, "checkRouting: bad shape"); return; }
  check(env, launch_check_routing(ptr<const int>(topkIdx), ptr<const float>(topkWeights), T, K, E,
                                  ptr<unsigned int>(firstBad), stream(st)),
        "check_routing");
}

// A synchronous copy between any two addresses (device memory, or host memory such as a Java
// MemorySegment's), the direction inferred from the addresses (unified addressing).
JNI_FN(void, copy)(JNIEnv* env, jclass, jlong dst, jlong src, jlong bytes) {
  if (bytes <= 0) return;
  cudaError_t e = cudaMemcpy(ptr<void>(dst), ptr<void>(src), (size_t)bytes, cudaMemcpyDefault);
  // from pageable host memory it may return before the DMA lands, and the caller's next kernel
  // runs on a non-blocking stream that does not wait for the legacy one: wait for it here
  if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);
  check(env, e, "cudaMemcpy(Default)");
}
JNI_FN(void, copyDeviceToDeviceAsync)(JNIEnv* env, jclass, jlong dst, jlong src, jlong bytes, jlong st) {
  if (bytes > 0)
    check(env, cudaMemcpyAsync(ptr<void>(dst), ptr<void>(src), (size_t)bytes, cudaMemcpyDeviceToDevice, stream(st)),
          "cudaMemcpyAsync(DtoD)");
}

JNI_FN(void, hold)(JNIEnv* env, jclass, jlong ns, jlong st) {
  check(env, moeyard::launch_hold(ns, stream(st)), "hold kernel");
}

// Host <-> device copies of Java arrays (synchronous; elements, not bytes).
#define COPY_FNS(JT, JARR, NAME)                                                                    \
  JNI_FN(void, NAME##ToDevice)(JNIEnv* env, jclass, JARR src, jint off, jint len, jlong dst) {      \
    if (len <= 0) return;                                                                           \
    if (off < 0 || (jlong)off + len > env->GetArrayLength(src)) { illegal(env, "array range out of bounds"); return; } \
    void* h = env->GetPrimitiveArrayCritical(src, nullptr);                                         \
    if (h == nullptr) return;                                                                       \
    cudaError_t e = cudaMemcpy(ptr<void>(dst), static_cast<JT*>(h) + off, (size_t)len * sizeof(JT), \
                               cudaMemcpyHostToDevice);                                             \
    /* pageable HtoD may return before the DMA lands: wait, so later streams see the data */       \
    if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);                              \
    env->ReleasePrimitiveArrayCritical(src, h, JNI_ABORT);                                          \
    check(env, e, "cudaMemcpy(HtoD)");                                                              \
  }                                                                                                 \
  JNI_FN(void, NAME##FromDevice)(JNIEnv* env, jclass, jlong src, JARR dst, jint off, jint len) {    \
    if (len <= 0) return;                                                                           \
    if (off < 0 || (jlong)off + len > env->GetArrayLength(dst)) { illegal(env, "array range out of bounds"); return; } \
    void* h = env->GetPrimitiveArrayCritical(dst, nullptr);                                         \
    if (h == nullptr) return;                                                                       \
    cudaError_t e = cudaMemcpy(static_cast<JT*>(h) + off, ptr<void>(src), (size_t)len * sizeof(JT), \
                               cudaMemcpyDeviceToHost);                                             \
    env->ReleasePrimitiveArrayCritical(dst, h, 0);                                                  \
    check(env, e, "cudaMemcpy(DtoH)");                                                              \
  }
COPY_FNS(jbyte, jbyteArray, bytes)
COPY_FNS(jshort, jshortArray, shorts)
COPY_FNS(jint, jintArray, ints)
COPY_FNS(jfloat, jfloatArray, floats)
COPY_FNS(jlong, jlongArray, longs)
#undef COPY_FNS

JNI_FN(jlong, streamCreate)(JNIEnv* env, jclass) {
  cudaStream_t s = nullptr;
  if (!check(env, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags")) return 0;
  return handle(s);
}
JNI_FN(void, streamDestroy)(JNIEnv* env, jclass, jlong s) {
  if (s != 0) check(env, cudaStreamDestroy(stream(s)), "cudaStreamDestroy");
}
JNI_FN(void, streamSynchronize)(JNIEnv* env, jclass, jlong s) {
  check(env, cudaStreamSynchronize(stream(s)), "cudaStreamSynchronize");
}
// true when everything on the stream is done, false while work is pending (a bounded wait polls it).
JNI_FN(jboolean, streamQuery)(JNIEnv* env, jclass, jlong s) {
  cudaError_t r = cudaStreamQuery(stream(s));
  if (r == cudaErrorNotReady) return JNI_FALSE;
  return check(env, r, "cudaStreamQuery") ? JNI_TRUE : JNI_FALSE;
}
JNI_FN(void, streamWaitEvent)(JNIEnv* env, jclass, jlong s, jlong ev) {
  check(env, cudaStreamWaitEvent(stream(s), event(ev), 0), "cudaStreamWaitEvent");
}
JNI_FN(jlong, eventCreate)(JNIEnv* env, jclass, jboolean timing) {
  cudaEvent_t e = nullptr;
  if (!check(env, cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
             "cudaEventCreateWithFlags"))
    return 0;
  return handle(e);
}
JNI_FN(void, eventDestroy)(JNIEnv* env, jclass, jlong e) {
  if (e != 0) check(env, cudaEventDestroy(event(e)), "cudaEventDestroy");
}
JNI_FN(void, eventRecord)(JNIEnv* env, jclass, jlong e, jlong s) {
  check(env, cudaEventRecord(event(e), stream(s)), "cudaEventRecord");
}
JNI_FN(void, eventSynchronize)(JNIEnv* env, jclass, jlong e) {
  check(env, cudaEventSynchronize(event(e)), "cudaEventSynchronize");
}
// true: done; false: still running; throws on error.
JNI_FN(jboolean, eventQuery)(JNIEnv* env, jclass, jlong e) {
  cudaError_t r = cudaEventQuery(event(e));
  if (r == cudaErrorNotReady) return JNI_FALSE;
  return check(env, r, "cudaEventQuery") ? JNI_TRUE : JNI_FALSE;
}
JNI_FN(jfloat, eventElapsedMs)(JNIEnv* env, jclass, jlong a, jlong b) {
  float ms = 0;
  check(env, cudaEventElapsedTime(&ms, event(a), event(b)), "cudaEventElapsedTime");
  return ms;
}

// ------------------------------------------------------------------------------------------------
// Kernels (device pointers as long, stream as long; all asynchronous)
// ------------------------------------------------------------------------------------------------

JNI_FN(void, mapSlots)(JNIEnv* env, jclass, jlong topkIdx, jint T, jint K, jlong offs, jlong slots,
                       jint E, jint S, jint localRanks, jint rank, jlong slotIds, jlong st) {
  check(env, launch_map_slots(ptr<const int>(topkIdx), T, K, ptr<const int>(offs), ptr<const int>(slots),
                              E, S, localRanks, rank, ptr<int>(slotIds), stream(st)),
        "map_slots");
}

JNI_FN(void, layoutCount)(JNIEnv* env, jclass, jlong slotIds, jint T, jint K, jint S, jint P, jint R,
                          jlong chunkCounts, jlong st) {
  if (P + R > cfg::kMaxLayoutBins) { illegal(env, "P + R exceeds kMaxLayoutBins"); return; }
  check(env, launch_layout_count(ptr<const int>(slotIds), T, K, S, P, R, ptr<int>(chunkCounts), stream(st)),
        "layout_count");
}

JNI_FN(void, layoutScan)(JNIEnv* env, jclass, jlong chunkCounts, jint T, jint P, jint R, jlong chunkBase,
                         jlong totals, jlong slotPrefix, jlong chunkPairBase, jlong pairOffset, jlong st) {
  check(env, launch_layout_scan(ptr<const int>(chunkCounts), T, P, R, ptr<int>(chunkBase), ptr<int>(totals),
                                ptr<int>(slotPrefix), ptr<int>(chunkPairBase), ptr<int>(pairOffset), stream(st)),
        "layout_scan");
}

JNI_FN(void, layoutPositions)(JNIEnv* env, jclass, jlong slotIds, jint T, jint K, jint S, jint P, jint R,
                              jlong chunkBase, jlong chunkPairBase, jlong pos, jlong pairPos, jlong pairIdx,
                              jlong isTokenInRank, jlong pairOffset, jlong st) {
  if (K > cfg::kMaxTopk) { illegal(env, "top-k exceeds kMaxTopk"); return; }
  check(env, launch_layout_positions(ptr<const int>(slotIds), T, K, S, P, R, ptr<const int>(chunkBase),
                                     ptr<const int>(chunkPairBase), ptr<int>(pos), ptr<int>(pairPos),
                                     ptr<int>(pairIdx), ptr<uint8_t>(isTokenInRank), ptr<int>(pairOffset),
                                     stream(st)),
        "layout_positions");
}

JNI_FN(void, recvOffsets)(JNIEnv* env, jclass, jlong totalsPtrs, jint d, jint R, jint S, jint P,
                          jlong recvCounts, jlong slotTotal, jlong rowBase, jlong slotBase, jlong pairBase,
                          jlong stagingPrefix, jlong st) {
  check(env, launch_recv_offsets(ptr<const int* const>(totalsPtrs), d, R, S, P, ptr<int>(recvCounts),
                                 ptr<int>(slotTotal), ptr<int>(rowBase), ptr<int>(slotBase), ptr<int>(pairBase),
                                 ptr<int>(stagingPrefix), stream(st)),
        "recv_offsets");
}

namespace {
DispatchArgs dispatchArgs(jlong x, jlong scales, jint scaleCols, jlong topkW, jlong slotIds, jlong pos,
                          jlong pairPos, jlong pairIdx, jint T, jint K, jint S, jint R, jint rank, jint rowBytes,
                          jlong recvXPtrs, jlong recvScalesPtrs, jlong recvWPtrs, jlong rowBasePtrs,
                          jlong pairBasePtrs, jlong pairSrcPtrs, jlong pairHomePtrs, jlong pairTokenPtrs,
                          jlong pairRowsPtrs) {
  DispatchArgs a;
  a.x = ptr<const void>(x);
  a.scales = ptr<const float>(scales);
  a.topkW = ptr<const float>(topkW);
  a.slotIds = ptr<const int>(slotIds);
  a.pos = ptr<const int>(pos);
  a.pairPos = ptr<const int>(pairPos);
  a.pairIdx = ptr<const int>(pairIdx);
  a.T = T; a.K = K; a.S = S; a.R = R; a.rank = rank;
  a.rowBytes = rowBytes;
  a.scaleCols = scales == 0 ? 0 : scaleCols;
  a.recvX = ptr<void* const>(recvXPtrs);
  a.recvScales = ptr<float* const>(recvScalesPtrs);
  a.recvW = ptr<float* const>(recvWPtrs);
  a.rowBase = ptr<const int* const>(rowBasePtrs);
  a.pairBase = ptr<const int* const>(pairBasePtrs);
  a.pairSrc = ptr<int* const>(pairSrcPtrs);
  a.pairHome = ptr<int* const>(pairHomePtrs);
  a.pairToken = ptr<int* const>(pairTokenPtrs);
  a.pairRows = ptr<int* const>(pairRowsPtrs);
  return a;
}
}  // namespace

JNI_FN(void, dispatchFused)(JNIEnv* env, jclass, jlong x, jlong scales, jint scaleCols, jlong topkW,
                            jlong slotIds, jlong pos, jlong pairPos, jlong pairIdx, jint T, jint K, jint S,
                            jint R, jint rank, jint rowBytes, jlong recvXPtrs, jlong recvScalesPtrs,
                            jlong recvWPtrs, jlong rowBasePtrs, jlong pairBasePtrs, jlong pairSrcPtrs,
                            jlong pairHomePtrs, jlong pairTokenPtrs, jlong pairRowsPtrs, jlong st,
                            jint kernels) {
  const DispatchArgs a = dispatchArgs(x, scales, scaleCols, topkW, slotIds, pos, pairPos, pairIdx, T, K, S, R, rank,
                                      rowBytes, recvXPtrs, recvScalesPtrs, recvWPtrs, rowBasePtrs, pairBasePtrs,
                                      pairSrcPtrs, pairHomePtrs, pairTokenPtrs, pairRowsPtrs);
  check(env, kernels == 1 ? launch_dispatch_fused_simple(a, stream(st)) : launch_dispatch_fused(a, stream(st)),
        "dispatch_fused");
}

JNI_FN(void, combineFused)(JNIEnv* env, jclass, jint dtype, jlong y, jlong recvW, jlong pairSrc,
                           jlong pairHome, jlong pairRows, jint numPairs, jint K, jint H, jlong partialPtrs,
                           jlong st, jint kernels) {
  const cudaError_t e =
      kernels == 1
          ? launch_combine_fused_simple(dtype, ptr<const void>(y), ptr<const float>(recvW), ptr<const int>(pairSrc),
                                        ptr<const int>(pairHome), ptr<const int>(pairRows), numPairs, K, H,
                                        ptr<void* const>(partialPtrs), stream(st))
          : launch_combine_fused(kernels, dtype, ptr<const void>(y), ptr<const float>(recvW), ptr<const int>(pairSrc),
                                 ptr<const int>(pairHome), ptr<const int>(pairRows), numPairs, K, H,
                                 ptr<void* const>(partialPtrs), stream(st));
  check(env, e, "combine_fused");
}

JNI_FN(void, combineHome)(JNIEnv* env, jclass, jint dtype, jlong partials, jlong pairOffset, jlong slotIds,
                          jint T, jint K, jint S, jint R, jint L, jint H, jlong out, jlong st, jint kernels) {
  HomeArgs h;
  h.partials = ptr<const void>(partials);
  h.pairOffset = ptr<const int>(pairOffset);
  h.slotIds = ptr<const int>(slotIds);
  h.T = T; h.K = K; h.S = S; h.R = R; h.L = L; h.H = H;
  h.out = ptr<void>(out);
  if (!home_args_valid(h)) {
    illegal(env, "combine_home: top-k " + std::to_string(K) + ", slots per rank " + std::to_string(S) + ", ranks " +
                     std::to_string(R) + ", local ranks " + std::to_string(L) + " outside the kernel's limits");
    return;
  }
  const cudaError_t e = kernels == 1 ? launch_combine_home_simple(dtype, h, stream(st))
                                     : launch_combine_home(kernels, dtype, h, stream(st));
  check(env, e, "combine_home");
}

JNI_FN(void, permute)(JNIEnv* env, jclass, jlong x, jlong scales, jint scaleCols, jlong topkW, jlong slotIds,
                      jlong pos, jlong slotPrefix, jint T, jint K, jint rowBytes, jlong permX, jlong permScales,
                      jlong permW, jlong st) {
  check(env, launch_permute(ptr<const void>(x), ptr<const float>(scales), scales == 0 ? 0 : scaleCols,
                            ptr<const float>(topkW), ptr<const int>(slotIds), ptr<const int>(pos),
                            ptr<const int>(slotPrefix), T, K, rowBytes, ptr<void>(permX), ptr<float>(permScales),
                            ptr<float>(permW), stream(st)),
        "permute");
}

JNI_FN(void, sortChunks)(JNIEnv* env, jclass, jlong stagingX, jlong stagingScales, jlong stagingW,
                         jlong stagingPrefix, jlong rowBase, jint R, jint S, jint numRows, jint rowBytes,
                         jint scaleCols, jlong recvX, jlong recvScales, jlong recvW, jlong st) {
  check(env, launch_sort_chunks(ptr<const void>(stagingX), ptr<const float>(stagingScales),
                                ptr<const float>(stagingW), ptr<const int>(stagingPrefix), ptr<const int>(rowBase),
                                R, S, numRows, rowBytes, stagingScales == 0 ? 0 : scaleCols, ptr<void>(recvX),
                                ptr<float>(recvScales), ptr<float>(recvW), stream(st)),
        "sort_chunks");
}

JNI_FN(void, sortChunksBack)(JNIEnv* env, jclass, jlong y, jlong stagingPrefix, jlong rowBase, jint R, jint S,
                             jint numRows, jint rowBytes, jlong stagingY, jlong st) {
  check(env, launch_sort_chunks_back(ptr<const void>(y), ptr<const int>(stagingPrefix), ptr<const int>(rowBase),
                                     R, S, numRows, rowBytes, ptr<void>(stagingY), stream(st)),
        "sort_chunks_back");
}

JNI_FN(void, unpermute)(JNIEnv* env, jclass, jint dtype, jlong returnY, jlong topkW, jlong slotIds, jlong pos,
                        jlong slotPrefix, jint T, jint K, jint S, jint R, jint L, jint H, jlong out, jlong st) {
  check(env, launch_unpermute(dtype, ptr<const void>(returnY), ptr<const float>(topkW), ptr<const int>(slotIds),
                              ptr<const int>(pos), ptr<const int>(slotPrefix), T, K, S, R, L, H, ptr<void>(out),
                              stream(st)),
        "unpermute");
}

// ---- the node-level path (relay.cu) ----

JNI_FN(void, dispatchNode)(JNIEnv* env, jclass, jlong x, jlong scales, jint scaleCols, jlong topkW,
                           jlong slotIds, jlong pos, jlong pairPos, jlong pairIdx, jint T, jint K, jint S,
                           jint R, jint rank, jint rowBytes, jlong recvXPtrs, jlong recvScalesPtrs,
                           jlong recvWPtrs, jlong rowBasePtrs, jlong pairBasePtrs, jlong pairSrcPtrs,
                           jlong pairHomePtrs, jlong pairTokenPtrs, jlong pairRowsPtrs, jlong rowIndex,
                           jint rowStride, jint destLo, jint destHi, jlong st) {
  if (rowStride < 1 || destLo < 0 || destHi > R || destLo > destHi) {
    illegal(env, "dispatchNode: row stride " + std::to_string(rowStride) + ", destinations [" + std::to_string(destLo) +
                     ", " + std::to_string(destHi) + ") of " + std::to_string(R) + " ranks");
    return;
  }
  DispatchArgs a = dispatchArgs(x, scales, scaleCols, topkW, slotIds, pos, pairPos, pairIdx, T, K, S, R, rank,
                                rowBytes, recvXPtrs, recvScalesPtrs, recvWPtrs, rowBasePtrs, pairBasePtrs,
                                pairSrcPtrs, pairHomePtrs, pairTokenPtrs, pairRowsPtrs);
  a.rowIndex = ptr<const int>(rowIndex);
  a.rowStride = rowStride;
  a.destLo = destLo;
  a.destHi = destHi;
  check(env, launch_dispatch_fused(a, stream(st)), "dispatch_fused (node)");
}

JNI_FN(void, relayNodeRows)(JNIEnv* env, jclass, jlong slotIds, jint T, jint K, jint S, jint R, jint L,
                            jlong nodeRow, jlong nodeCounts, jlong st) {
  check(env, launch_node_rows(ptr<const int>(slotIds), T, K, S, R, L, ptr<int>(nodeRow), ptr<int>(nodeCounts),
                              stream(st)),
        "node_rows");
}

JNI_FN(void, relayPack)(JNIEnv* env, jclass, jlong x, jlong scales, jint scaleCols, jlong topkIdx, jlong topkW,
                        jlong nodeRow, jlong nodeCounts, jint T, jint K, jint M, jint node, jint rowBytes,
                        jlong sendArea, jlong slotBytes, jlong st) {
  RelayPackArgs a;
  a.x = ptr<const void>(x);
  a.scales = ptr<const float>(scales);
  a.topkIdx = ptr<const int>(topkIdx);
  a.topkW = ptr<const float>(topkW);
  a.nodeRow = ptr<const int>(nodeRow);
  a.nodeCounts = ptr<const int>(nodeCounts);
  a.T = T; a.K = K; a.M = M; a.node = node;
  a.rowBytes = rowBytes;
  a.scaleCols = scales == 0 ? 0 : scaleCols;
  a.sendArea = ptr<char>(sendArea);
  a.slotBytes = slotBytes;
  check(env, launch_relay_pack(a, stream(st)), "relay_pack");
}

JNI_FN(void, relayCombineSend)(JNIEnv* env, jclass, jint dtype, jlong y, jlong recvW, jlong pairSrc, jlong pairHome,
                               jlong pairRows, jint numPairs, jint K, jint H, jlong partialPtrs,
                               jlongArray stageRowsA, jintArray stageRowA, jlong st) {
  RelayStage stage{};
  if (stageRowsA == nullptr || stageRowA == nullptr || env->GetArrayLength(stageRowsA) > cfg::kMaxRanks ||
      env->GetArrayLength(stageRowA) != env->GetArrayLength(stageRowsA)) {
    illegal(env, "relayCombineSend: one staging address and row per rank, at most " + std::to_string(cfg::kMaxRanks));
    return;
  }
  const jsize n = env->GetArrayLength(stageRowsA);
  jlong rows[cfg::kMaxRanks];
  env->GetLongArrayRegion(stageRowsA, 0, n, rows);
  env->GetIntArrayRegion(stageRowA, 0, n, stage.row);
  for (jsize i = 0; i < n; ++i) stage.rows[i] = ptr<void>(rows[i]);
  check(env, launch_relay_combine_send(dtype, ptr<const void>(y), ptr<const float>(recvW), ptr<const int>(pairSrc),
                                       ptr<const int>(pairHome), ptr<const int>(pairRows), numPairs, K, H,
                                       ptr<void* const>(partialPtrs), stage, stream(st)),
        "relay_combine_send");
}

JNI_FN(void, relayNodeSum)(JNIEnv* env, jclass, jint dtype, jlong staging, jlong slotIds, jlong pairPos,
                           jlong pairsTo, jlong nodeRow, jint T, jint K, jint S, jint R, jint L, jint m, jint H,
                           jlong out, jlong st) {
  RelayNodeSumArgs a;
  a.staging = ptr<const void>(staging);
  a.slotIds = ptr<const int>(slotIds);
  a.pairPos = ptr<const int>(pairPos);
  a.pairsTo = ptr<const int>(pairsTo);
  a.nodeRow = ptr<const int>(nodeRow);
  a.T = T; a.K = K; a.S = S; a.R = R; a.L = L; a.M = L > 0 ? R / L : 0; a.m = m; a.H = H;
  a.out = ptr<void>(out);
  check(env, launch_relay_node_sum(dtype, a, stream(st)), "relay_node_sum");
}

JNI_FN(void, relayHome)(JNIEnv* env, jclass, jint dtype, jlong partials, jlong nodeRecv, jlong pairOffset,
                        jlong slotIds, jlong nodeRow, jint T, jint K, jint S, jint R, jint L, jint node, jint H,
                        jint slotTokens, jlong out, jlong st) {
  RelayHomeArgs a;
  a.partials = ptr<const void>(partials);
  a.nodeRecv = ptr<const void>(nodeRecv);
  a.pairOffset = ptr<const int>(pairOffset);
  a.slotIds = ptr<const int>(slotIds);
  a.nodeRow = ptr<const int>(nodeRow);
  a.T = T; a.K = K; a.S = S; a.R = R; a.L = L; a.M = L > 0 ? R / L : 0; a.node = node; a.H = H;
  a.slotTokens = slotTokens;
  a.out = ptr<void>(out);
  check(env, launch_relay_home(dtype, a, stream(st)), "relay_home");
}

// ------------------------------------------------------------------------------------------------
// CUDA IPC (device buffers shared between the processes of one node)
// ------------------------------------------------------------------------------------------------

JNI_FN(jint, ipcHandleBytes)(JNIEnv*, jclass) { return (jint)sizeof(cudaIpcMemHandle_t); }

// null when device 0 can export an IPC handle, else why not. Never throws: it is a probe. It
// allocates (and frees) 256 bytes, since only a real export says whether the platform allows it.
JNI_FN(jstring, ipcProbe)(JNIEnv* env, jclass) {
  int unified = 0;
  cudaError_t e = cudaDeviceGetAttribute(&unified, cudaDevAttrUnifiedAddressing, 0);
  if (e != cudaSuccess) return env->NewStringUTF(cudaMessage("cudaDeviceGetAttribute(cudaDevAttrUnifiedAddressing)", e).c_str());
  if (unified == 0) return env->NewStringUTF("device 0 has no unified addressing, which CUDA IPC needs");
  void* p = nullptr;
  e = cudaMalloc(&p, cfg::kBufferAlignment);
  if (e != cudaSuccess) return env->NewStringUTF(cudaMessage("cudaMalloc", e).c_str());
  cudaIpcMemHandle_t h;
  e = cudaIpcGetMemHandle(&h, p);
  cudaFree(p);
  if (e != cudaSuccess) return env->NewStringUTF(cudaMessage("cudaIpcGetMemHandle", e).c_str());
  return nullptr;
}

// The IPC handle of the allocation that starts at p (a handle names a whole cudaMalloc allocation).
JNI_FN(jbyteArray, ipcGetMemHandle)(JNIEnv* env, jclass, jlong p) {
  cudaIpcMemHandle_t h;
  if (!check(env, cudaIpcGetMemHandle(&h, ptr<void>(p)), "cudaIpcGetMemHandle")) return nullptr;
  jbyteArray a = env->NewByteArray((jsize)sizeof h);
  if (a != nullptr) env->SetByteArrayRegion(a, 0, (jsize)sizeof h, reinterpret_cast<const jbyte*>(&h));
  return a;
}

// Maps another process's allocation into this one (peer access enabled lazily); the address is
// released only by ipcCloseMemHandle. A process cannot open its own handles.
JNI_FN(jlong, ipcOpenMemHandle)(JNIEnv* env, jclass, jbyteArray handleA) {
  cudaIpcMemHandle_t h;
  if (handleA == nullptr || env->GetArrayLength(handleA) != (jsize)sizeof h) {
    illegal(env, "an IPC handle has " + std::to_string(sizeof h) + " bytes, got " +
                     (handleA == nullptr ? std::string("null") : std::to_string(env->GetArrayLength(handleA))));
    return 0;
  }
  env->GetByteArrayRegion(handleA, 0, (jsize)sizeof h, reinterpret_cast<jbyte*>(&h));
  void* p = nullptr;
  if (!check(env, cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle")) return 0;
  return handle(p);
}

JNI_FN(void, ipcCloseMemHandle)(JNIEnv* env, jclass, jlong p) {
  check(env, cudaIpcCloseMemHandle(ptr<void>(p)), "cudaIpcCloseMemHandle");
}

// An event other processes can wait for (cudaIpcGetEventHandle needs both flags: interprocess
// events cannot carry timing). Destroyed with eventDestroy.
JNI_FN(jlong, eventCreateInterprocess)(JNIEnv* env, jclass) {
  cudaEvent_t e = nullptr;
  if (!check(env, cudaEventCreateWithFlags(&e, cudaEventInterprocess | cudaEventDisableTiming),
             "cudaEventCreateWithFlags(cudaEventInterprocess)"))
    return 0;
  return handle(e);
}

JNI_FN(jint, ipcEventHandleBytes)(JNIEnv*, jclass) { return (jint)sizeof(cudaIpcEventHandle_t); }

JNI_FN(jbyteArray, ipcGetEventHandle)(JNIEnv* env, jclass, jlong e) {
  cudaIpcEventHandle_t h;
  if (!check(env, cudaIpcGetEventHandle(&h, event(e)), "cudaIpcGetEventHandle")) return nullptr;
  jbyteArray a = env->NewByteArray((jsize)sizeof h);
  if (a != nullptr) env->SetByteArrayRegion(a, 0, (jsize)sizeof h, reinterpret_cast<const jbyte*>(&h));
  return a;
}

// Another process's event, to wait for (cudaStreamWaitEvent); released with eventDestroy, before
// its owner destroys the original.
JNI_FN(jlong, ipcOpenEventHandle)(JNIEnv* env, jclass, jbyteArray handleA) {
  cudaIpcEventHandle_t h;
  if (handleA == nullptr || env->GetArrayLength(handleA) != (jsize)sizeof h) {
    illegal(env, "an IPC event handle has " + std::to_string(sizeof h) + " bytes, got " +
                     (handleA == nullptr ? std::string("null") : std::to_string(env->GetArrayLength(handleA))));
    return 0;
  }
  env->GetByteArrayRegion(handleA, 0, (jsize)sizeof h, reinterpret_cast<jbyte*>(&h));
  cudaEvent_t e = nullptr;
  if (!check(env, cudaIpcOpenEventHandle(&e, h), "cudaIpcOpenEventHandle")) return 0;
  return handle(e);
}

// ------------------------------------------------------------------------------------------------
// Host index math (no CUDA call; for the host unit tests)
// ------------------------------------------------------------------------------------------------

JNI_FN(jintArray, hostChooseReplicas)(JNIEnv* env, jclass, jintArray offsA, jintArray slotsA, jint S,
                                      jint localRanks, jint rank, jintArray topkA, jint K) {
  IntArray offs(env, offsA), slots(env, slotsA), topk(env, topkA);
  if (offs.data == nullptr || slots.data == nullptr || topk.data == nullptr) { illegal(env, "null array"); return nullptr; }
  const int E = offs.len - 1;
  std::vector<int> out(topk.len);
  for (jsize i = 0; i < topk.len; ++i) {
    const int e = topk.get()[i];
    out[i] = (e < 0 || e >= E) ? -1 : choose_replica(offs.get(), slots.get(), S, localRanks, rank, i / K, e);
  }
  return newIntArray(env, out);
}

// queries: triples (r, ls, j); returns the FUSCO receive row of each, from the formula.
JNI_FN(jintArray, hostRecvRows)(JNIEnv* env, jclass, jintArray countsA, jint R, jint S, jintArray qA) {
  IntArray counts(env, countsA), q(env, qA);
  if (!needLen(env, counts, (long long)R * S, "counts") || q.data == nullptr) return nullptr;
  std::vector<int> out(q.len / 3);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = recv_row(counts.get(), R, S, q.get()[3 * i], q.get()[3 * i + 1], q.get()[3 * i + 2]);
  return newIntArray(env, out);
}

// Returns slotTotal[S] ++ slotBase[S+1] ++ rowBase[R*S] ++ stagingPrefix[R*S+1], as recv_offsets.
JNI_FN(jintArray, hostRecvOffsets)(JNIEnv* env, jclass, jintArray countsA, jint R, jint S) {
  IntArray counts(env, countsA);
  if (!needLen(env, counts, (long long)R * S, "counts")) return nullptr;
  const int* c = counts.get();
  std::vector<int> out;
  for (int ls = 0; ls < S; ++ls) out.push_back(recv_slot_total(c, R, S, ls));
  int total = 0;
  for (int ls = 0; ls < S; ++ls) { out.push_back(recv_slot_base(c, R, S, ls)); total += recv_slot_total(c, R, S, ls); }
  out.push_back(total);
  for (int r = 0; r < R; ++r)
    for (int ls = 0; ls < S; ++ls) out.push_back(recv_slot_base(c, R, S, ls) + recv_src_base(c, S, r, ls));
  int run = 0;
  for (int i = 0; i < R * S; ++i) { out.push_back(run); run += c[i]; }
  out.push_back(run);
  return newIntArray(env, out);
}

JNI_FN(void, hostLayout)(JNIEnv* env, jclass, jintArray slotIdsA, jint T, jint K, jint S, jint P, jint R,
                         jint chunk, jintArray posA, jintArray pairPosA, jintArray pairIdxA, jintArray pairOffA,
                         jintArray totalsA, jintArray slotPrefixA, jbyteArray inRankA) {
  if (chunk <= 0) { illegal(env, "chunk must be positive"); return; }
  IntArray slotIds(env, slotIdsA), pos(env, posA, true), pairPos(env, pairPosA, true), pairIdx(env, pairIdxA, true),
      pairOff(env, pairOffA, true), totals(env, totalsA, true), slotPrefix(env, slotPrefixA, true);
  const long long TK = (long long)T * K;
  if (!needLen(env, slotIds, TK, "slotIds") || !needLen(env, pos, TK, "pos") || !needLen(env, pairPos, TK, "pairPos") ||
      !needLen(env, pairIdx, TK, "pairIdx") || !needLen(env, pairOff, T + 1LL, "pairOffset") ||
      !needLen(env, totals, P + R, "totals") || !needLen(env, slotPrefix, P + 1LL, "slotPrefix"))
    return;
  if (inRankA == nullptr || env->GetArrayLength(inRankA) < (long long)T * R) { illegal(env, "isTokenInRank too short"); return; }
  for (long long i = 0; i < TK; ++i) {
    const int p = slotIds.get()[i];
    if (p >= P || p < -1) { illegal(env, "slot id out of range: " + std::to_string(p)); return; }
  }
  std::vector<int8_t> inRank((size_t)T * R);
  hostLayout(slotIds.get(), T, K, S, P, R, chunk, pos.get(), pairPos.get(), pairIdx.get(), pairOff.get(),
             totals.get(), slotPrefix.get(), inRank.data());
  if (!inRank.empty()) env->SetByteArrayRegion(inRankA, 0, (jsize)inRank.size(), reinterpret_cast<jbyte*>(inRank.data()));
}

// Returns pairOffset[T+1] straight from pair_count (no chunking).
JNI_FN(jintArray, hostPairOffsets)(JNIEnv* env, jclass, jintArray slotIdsA, jint T, jint K, jint S) {
  IntArray slotIds(env, slotIdsA);
  if (!needLen(env, slotIds, (long long)T * K, "slotIds")) return nullptr;
  std::vector<int> out(T + 1);
  int run = 0;
  for (int t = 0; t < T; ++t) { out[t] = run; run += pair_count(slotIds.get() + (long long)t * K, K, S); }
  out[T] = run;
  return newIntArray(env, out);
}

// Returns begin/end pairs of every chunk of [0, n).
JNI_FN(jlongArray, hostChunkRanges)(JNIEnv* env, jclass, jlong n, jint size) {
  if (size <= 0 || n < 0) { illegal(env, "bad chunk range arguments"); return nullptr; }
  const int c = chunk_count(n, size);
  std::vector<jlong> out(2 * (size_t)c);
  for (int i = 0; i < c; ++i) { out[2 * i] = chunk_begin(i, size); out[2 * i + 1] = chunk_end(i, n, size); }
  jlongArray a = env->NewLongArray((jsize)out.size());
  if (a != nullptr && !out.empty()) env->SetLongArrayRegion(a, 0, (jsize)out.size(), out.data());
  return a;
}

JNI_FN(jintArray, hostFindChunk)(JNIEnv* env, jclass, jintArray prefixA, jintArray rowsA) {
  IntArray prefix(env, prefixA), rows(env, rowsA);
  if (prefix.data == nullptr || prefix.len < 1 || rows.data == nullptr) { illegal(env, "bad arrays"); return nullptr; }
  std::vector<int> out(rows.len);
  for (jsize i = 0; i < rows.len; ++i) out[i] = find_chunk(prefix.get(), prefix.len - 1, rows.get()[i]);
  return newIntArray(env, out);
}

JNI_FN(jintArray, hostSortSmall)(JNIEnv* env, jclass, jintArray a) {
  IntArray in(env, a);
  if (in.data == nullptr) { illegal(env, "null array"); return nullptr; }
  std::vector<int> v(in.get(), in.get() + in.len);
  sort_small(v.data(), (int)v.size());
  return newIntArray(env, v);
}

// The combine kernels' row sum (warp_sum_rows) on the host, lane by lane (host_check.cu): rows[k]
// of y summed in order, weighted by w (a pair's partial) or, w null, as the home sum (by node when
// nodes, folding where runEnds says). Returns one output row as bytes.
JNI_FN(jbyteArray, hostWarpSumRows)(JNIEnv* env, jclass, jint dtype, jbyteArray yA, jintArray rowsA,
                                    jfloatArray wA, jint H, jlong runEnds, jboolean nodes) {
  IntArray rows(env, rowsA);
  if (yA == nullptr || rows.data == nullptr || H < 0) { illegal(env, "bad arguments"); return nullptr; }
  if (dtype != kBF16 && dtype != kFP16 && dtype != kFP32) { illegal(env, "combine dtype must be BF16, FP16 or FP32"); return nullptr; }
  const int es = dtype == kFP32 ? 4 : 2;
  const long long rowBytes = (long long)H * es;
  const jsize yLen = env->GetArrayLength(yA);
  const int n = rows.len;
  if (nodes && wA != nullptr) { illegal(env, "the node fold is the home sum's: no weights"); return nullptr; }
  if (nodes && n > 64) { illegal(env, "a home sum has at most 64 partials, got " + std::to_string(n)); return nullptr; }
  if (wA != nullptr && env->GetArrayLength(wA) != n) { illegal(env, "one weight per row"); return nullptr; }
  if (wA != nullptr && n > cfg::kWarpSize) { illegal(env, "a pair has at most 32 rows"); return nullptr; }
  for (int k = 0; k < n; ++k) {
    if (rows.get()[k] < 0 || (rows.get()[k] + 1) * rowBytes > yLen) {
      illegal(env, "rows[" + std::to_string(k) + "] = " + std::to_string(rows.get()[k]) + " is outside y");
      return nullptr;
    }
  }
  // 256-byte aligned copies, as cudaMalloc's: the kernels' vector loads need their alignment
  auto aligned = [](size_t bytes) { return static_cast<jbyte*>(std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256)); };
  std::unique_ptr<jbyte, void (*)(void*)> y(aligned((size_t)yLen), std::free), out(aligned((size_t)rowBytes), std::free);
  if (!y || !out) { throwJava(env, "java/lang/OutOfMemoryError", "hostWarpSumRows"); return nullptr; }
  env->GetByteArrayRegion(yA, 0, yLen, y.get());
  std::vector<float> w(wA != nullptr ? n : 0);
  if (wA != nullptr && n > 0) env->GetFloatArrayRegion(wA, 0, n, w.data());
  host_warp_sum_rows(dtype, y.get(), rows.get(), wA != nullptr ? w.data() : nullptr, n, H,
                     (unsigned long long)runEnds, nodes != JNI_FALSE, out.get());
  jbyteArray a = env->NewByteArray((jsize)rowBytes);
  if (a != nullptr && rowBytes > 0) env->SetByteArrayRegion(a, 0, (jsize)rowBytes, out.get());
  return a;
}

JNI_FN(jlong, hostNodeRunEnds)(JNIEnv* env, jclass, jlong rankMask, jint R, jint L) {
  if (R < 1 || R > cfg::kMaxRanks || L < 1 || R % L != 0) {
    illegal(env, "ranks " + std::to_string(R) + " / local ranks " + std::to_string(L) + " invalid");
    return 0;
  }
  return (jlong)node_run_ends((unsigned long long)rankMask, R, L);
}

// The combine arithmetic of one token on the host (see hostCombineToken above); y holds the rows
// as raw little-endian bytes of the dtype; groupRanks[g] is pair g's destination rank (ascending);
// returns the output row as bytes.
JNI_FN(jbyteArray, hostCombineToken)(JNIEnv* env, jclass, jint dtype, jbyteArray yA, jfloatArray wA,
                                     jintArray groupsA, jintArray groupRanksA, jint R, jint L, jint H) {
  IntArray groups(env, groupsA);
  IntArray groupRanks(env, groupRanksA);
  if (groups.data == nullptr || groupRanks.data == nullptr || yA == nullptr || wA == nullptr || H < 0) {
    illegal(env, "bad arguments");
    return nullptr;
  }
  if (R < 1 || R > cfg::kMaxRanks || L < 1 || R % L != 0) {
    illegal(env, "ranks " + std::to_string(R) + " / local ranks " + std::to_string(L) + " invalid");
    return nullptr;
  }
  if (groupRanks.len != groups.len) { illegal(env, "groups and groupRanks differ in length"); return nullptr; }
  unsigned long long mask = 0ull;
  for (jsize g = 0; g < groupRanks.len; ++g) {
    const int d = groupRanks.get()[g];
    if (d < 0 || d >= R || (g > 0 && d <= groupRanks.get()[g - 1])) {
      illegal(env, "groupRanks[" + std::to_string(g) + "] = " + std::to_string(d) + " is not ascending in [0, " +
                       std::to_string(R) + ")");
      return nullptr;
    }
    mask |= 1ull << d;
  }
  const bool nodes = R > L;
  const unsigned long long ends = nodes ? node_run_ends(mask, R, L) : 0ull;
  int rows = 0;
  for (jsize g = 0; g < groups.len; ++g) rows += groups.get()[g];
  const int es = dtype == kFP32 ? 4 : 2;
  if (dtype != kBF16 && dtype != kFP16 && dtype != kFP32) { illegal(env, "combine dtype must be BF16, FP16 or FP32"); return nullptr; }
  if (env->GetArrayLength(yA) != (long long)rows * H * es || env->GetArrayLength(wA) < rows) {
    illegal(env, "y / w sizes do not match the groups");
    return nullptr;
  }
  std::vector<jbyte> y((size_t)rows * H * es), out((size_t)H * es);
  std::vector<float> w(rows);
  if (!y.empty()) env->GetByteArrayRegion(yA, 0, (jsize)y.size(), y.data());
  if (rows > 0) env->GetFloatArrayRegion(wA, 0, rows, w.data());
  switch (dtype) {
    case kBF16: hostCombineToken(reinterpret_cast<const __nv_bfloat16*>(y.data()), w.data(), groups.get(), groups.len, ends, nodes, H, reinterpret_cast<__nv_bfloat16*>(out.data())); break;
    case kFP16: hostCombineToken(reinterpret_cast<const __half*>(y.data()), w.data(), groups.get(), groups.len, ends, nodes, H, reinterpret_cast<__half*>(out.data())); break;
    default: hostCombineToken(reinterpret_cast<const float*>(y.data()), w.data(), groups.get(), groups.len, ends, nodes, H, reinterpret_cast<float*>(out.data())); break;
  }
  jbyteArray a = env->NewByteArray((jsize)out.size());
  if (a != nullptr && !out.empty()) env->SetByteArrayRegion(a, 0, (jsize)out.size(), out.data());
  return a;
}

// ---- the node-level path's index math and arithmetic on the host (relay_math.cuh, host_check.cu) ----

static bool relayShape(JNIEnv* env, int R, int L) {
  if (R < 1 || R > cfg::kMaxRanks || L < 1 || R % L != 0)
    return illegal(env, "ranks " + std::to_string(R) + " / local ranks " + std::to_string(L) + " invalid");
  return true;
}

// nodeRow[T*M] ++ nodeCounts[M], as node_rows computes them.
JNI_FN(jintArray, hostNodeRows)(JNIEnv* env, jclass, jintArray slotIdsA, jint T, jint K, jint S, jint R, jint L) {
  IntArray slotIds(env, slotIdsA);
  if (!relayShape(env, R, L) || !needLen(env, slotIds, (long long)T * K, "slotIds")) return nullptr;
  const int M = R / L;
  std::vector<int> out((size_t)T * M + M);
  for (int m = 0; m < M; ++m) {
    int j = 0;
    for (int t = 0; t < T; ++t)
      out[(size_t)t * M + m] = token_on_node(slotIds.get() + (long long)t * K, K, S, L, m) ? j++ : -1;
    out[(size_t)T * M + m] = j;
  }
  return newIntArray(env, out);
}

// {rows at, scales at, bytes} of a message of T tokens of top-K carrying n rows.
JNI_FN(jlongArray, hostRelayMessage)(JNIEnv* env, jclass, jint T, jint K, jint n, jint rowBytes, jint scaleCols) {
  jlong v[3] = {msg_rows_at(T, K), msg_scales_at(T, K, n, rowBytes), msg_bytes(T, K, n, rowBytes, scaleCols)};
  jlongArray a = env->NewLongArray(3);
  if (a != nullptr) env->SetLongArrayRegion(a, 0, 3, v);
  return a;
}

// The home sum's terms of a token: node, pair index (-1: a received node partial) per term; then
// the run ends' two 32-bit halves (low, high).
JNI_FN(jintArray, hostRelayHomeTerms)(JNIEnv* env, jclass, jlong rankMask, jint node, jint R, jint L) {
  if (!relayShape(env, R, L)) return nullptr;
  const unsigned long long mask = (unsigned long long)rankMask;
  const int n = relay_home_terms(mask, node, R, L);
  std::vector<int> out;
  for (int k = 0; k < n; ++k) {
    int pi;
    out.push_back(relay_home_term(mask, node, R, L, k, &pi));
    out.push_back(pi);
  }
  const unsigned long long ends = relay_home_run_ends(mask, node, R, L);
  out.push_back((int)(ends & 0xffffffffull));
  out.push_back((int)(ends >> 32));
  return newIntArray(env, out);
}

// For each selection (t, k) of a relayed source: the staging row relay_node_sum reads for it on
// node m (run_start + pairPos), where k is the token's first selection of a rank of m; else -1.
JNI_FN(jintArray, hostRelayStagingRows)(JNIEnv* env, jclass, jintArray slotIdsA, jintArray pairPosA,
                                        jintArray pairsToA, jint T, jint K, jint S, jint R, jint L, jint m) {
  IntArray slotIds(env, slotIdsA), pairPos(env, pairPosA), pairsTo(env, pairsToA);
  if (!relayShape(env, R, L) || !needLen(env, slotIds, (long long)T * K, "slotIds") ||
      !needLen(env, pairPos, (long long)T * K, "pairPos") || !needLen(env, pairsTo, R, "pairsTo"))
    return nullptr;
  std::vector<int> out((size_t)T * K, -1);
  for (int t = 0; t < T; ++t) {
    const int* row = slotIds.get() + (long long)t * K;
    for (int k = 0; k < K; ++k) {
      const int p = row[k];
      if (p < 0 || node_of_rank(rank_of_slot(p, S), L) != m || !first_of_rank(row, K, S, k)) continue;
      out[(size_t)t * K + k] = run_start(pairsTo.get(), m, L, rank_of_slot(p, S)) + pairPos.get()[(long long)t * K + k];
    }
  }
  return newIntArray(env, out);
}

// One token's relayed combine on the host (host_check.cu): y its rows grouped by pair (groups[g]
// rows for rank groupRanks[g], ascending), w their weights, home its home rank.
JNI_FN(jbyteArray, hostRelayCombineToken)(JNIEnv* env, jclass, jint dtype, jbyteArray yA, jfloatArray wA,
                                          jintArray groupsA, jintArray groupRanksA, jint R, jint L, jint home,
                                          jint H) {
  IntArray groups(env, groupsA), groupRanks(env, groupRanksA);
  if (groups.data == nullptr || groupRanks.data == nullptr || yA == nullptr || wA == nullptr || H < 0 ||
      groups.len != groupRanks.len) {
    illegal(env, "bad arguments");
    return nullptr;
  }
  if (!relayShape(env, R, L)) return nullptr;
  if (home < 0 || home >= R) { illegal(env, "home " + std::to_string(home) + " outside [0, " + std::to_string(R) + ")"); return nullptr; }
  if (dtype != kBF16 && dtype != kFP16 && dtype != kFP32) { illegal(env, "combine dtype must be BF16, FP16 or FP32"); return nullptr; }
  int rows = 0;
  for (jsize g = 0; g < groups.len; ++g) {
    const int d = groupRanks.get()[g];
    if (d < 0 || d >= R || (g > 0 && d <= groupRanks.get()[g - 1]) || groups.get()[g] < 1 || groups.get()[g] > cfg::kWarpSize) {
      illegal(env, "group " + std::to_string(g) + ": rank " + std::to_string(d) + ", " + std::to_string(groups.get()[g]) +
                       " rows (ranks ascending in [0, R), 1 to 32 rows)");
      return nullptr;
    }
    rows += groups.get()[g];
  }
  const int es = dtype == kFP32 ? 4 : 2;
  if (env->GetArrayLength(yA) != (long long)rows * H * es || env->GetArrayLength(wA) != rows) {
    illegal(env, "y / w sizes do not match the groups");
    return nullptr;
  }
  auto aligned = [](size_t bytes) { return static_cast<jbyte*>(std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256)); };
  std::unique_ptr<jbyte, void (*)(void*)> y(aligned((size_t)rows * H * es), std::free), out(aligned((size_t)H * es), std::free);
  if (!y || !out) { throwJava(env, "java/lang/OutOfMemoryError", "hostRelayCombineToken"); return nullptr; }
  if (rows > 0) env->GetByteArrayRegion(yA, 0, rows * H * es, y.get());
  std::vector<float> w(rows);
  if (rows > 0) env->GetFloatArrayRegion(wA, 0, rows, w.data());
  host_relay_combine_token(dtype, y.get(), w.data(), groups.get(), groupRanks.get(), groups.len, R, L, home, H, out.get());
  jbyteArray a = env->NewByteArray((jsize)H * es);
  if (a != nullptr && H > 0) env->SetByteArrayRegion(a, 0, (jsize)H * es, out.get());
  return a;
}
