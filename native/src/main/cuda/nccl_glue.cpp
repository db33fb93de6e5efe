// moeyard native: NCCL opened at run time, the JNI entry points of io.moeyard.cuda.NcclNative.
//
// libmoeyard_cuda.so has no link-time dependency on NCCL: it must load where NCCL is absent (CI,
// machines without a GPU), and a GPU run's bundle cannot carry a Java binding of NCCL (the
// org.bytedeco presets' natives are hundreds of MiB). So NcclNative.load() dlopens libnccl.so.2
// once (by soname through the loader's search path, LD_LIBRARY_PATH included, or a file the caller
// names), looks up exactly the functions below, and every other entry point calls through those
// pointers. Nothing here touches CUDA: streams and device addresses pass through as opaque
// pointers, so the host tests can drive this file against a stub libnccl on host memory.
//
// NCCL's headers are not installed where this library is built; the few types are its public ABI,
// declared here: ncclResult_t and ncclDataType_t are C enums (int-sized), ncclUniqueId is a struct of
// NCCL_UNIQUE_ID_BYTES (128) chars passed BY VALUE to ncclCommInitRank, ncclComm_t and cudaStream_t
// are pointers. ncclConfig_t is declared as its first four fields, the ones of NCCL 2.14, which
// introduced non-blocking communicators: NCCL reads a config of the size it states over its own
// defaults, so a short one stays valid in every later NCCL.
//
// Non-blocking communicators: a wait inside NCCL cannot be bounded or interrupted, and a peer that
// never calls ncclCommInitRank leaves the others in it for ever. So communicators made here are
// non-blocking (config.blocking = 0): set-up, ncclGroupEnd and ncclCommFinalize may return
// ncclInProgress, which is not an error here, and the Java side polls ncclCommGetAsyncError
// (commReady) with its own deadline, aborting the communicator (ncclCommAbort) when it passes.
//
// Errors: a failed load returns its reason (dlerror(), or the names of the missing functions); a
// failed NCCL call throws io.moeyard.cuda.CudaException "<call> failed: <code> (<ncclGetErrorString>)",
// followed by "; NCCL's last error: ..." (ncclGetLastError, NCCL >= 2.13, looked up but optional)
// where NCCL has one; an entry point called before a successful load throws IllegalStateException with the
// load's reason. Nothing here aborts the JVM.
#include <jni.h>
#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace {

constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
struct UniqueId {
  char internal[kUniqueIdBytes];
};
using Result = int;            // ncclResult_t
constexpr Result kSuccess = 0;  // ncclSuccess
constexpr Result kInProgress = 7;  // ncclInProgress (NCCL >= 2.14): a non-blocking call still running
constexpr int kUint8 = 1;       // ncclUint8 (ncclInt8 = ncclChar = 0)
using Comm = void*;             // ncclComm_t
using Stream = void*;           // cudaStream_t

constexpr const char* kSoname = "libnccl.so.2";

// ncclConfig_t as NCCL 2.14 had it; NCCL_CONFIG_INITIALIZER's size, magic and version, and blocking.
struct Config {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
};
constexpr unsigned int kConfigMagic = 0xcafebeef;
constexpr unsigned int kConfigVersion = 21400;  // NCCL_VERSION(2, 14, 0)

struct Api {
  Result (*getVersion)(int*);
  Result (*getUniqueId)(UniqueId*);
  Result (*commInitRank)(Comm*, int, UniqueId, int);
  Result (*commInitRankConfig)(Comm*, int, UniqueId, int, Config*);
  Result (*commGetAsyncError)(Comm, Result*);
  Result (*commFinalize)(Comm);
  Result (*commAbort)(Comm);
  Result (*commCount)(Comm, int*);
  Result (*commDestroy)(Comm);
  Result (*groupStart)();
  Result (*groupEnd)();
  Result (*send)(const void*, size_t, int, int, Comm, Stream);
  Result (*recv)(void*, size_t, int, int, Comm, Stream);
  const char* (*getErrorString)(Result);
  const char* (*getLastError)(Comm);  // optional
};

// The load happens once (NcclAvailability probes once per class loader, and each class loader has
// its own copy of this library); `ready` publishes `api` to the threads that call NCCL later.
std::mutex loadLock;
bool tried = false;
std::string failure;  // why the load failed; empty when it succeeded
std::string file;     // the libnccl file the loader picked
Api api{};
std::atomic<bool> ready{false};

template <typename F>
bool find(void* h, const char* name, F& fn, std::string& missing, std::string& why) {
  dlerror();
  void* s = dlsym(h, name);
  if (s == nullptr) {
    const char* e = dlerror();
    if (!missing.empty()) missing += ", ";
    missing += name;
    if (e != nullptr) why = e;
    return false;
  }
  fn = reinterpret_cast<F>(s);
  return true;
}

std::string tryLoad(const char* path) {
  const char* name = path != nullptr ? path : kSoname;
  dlerror();
  // RTLD_LOCAL: NCCL's symbols stay out of the process's global scope, so they cannot clash with
  // another copy (an engine's) loaded by someone else.
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    return std::string("dlopen(\"") + name + "\") failed: " + (e != nullptr ? e : "no reason given");
  }
  Api a{};
  std::string missing, why;
  find(h, "ncclGetVersion", a.getVersion, missing, why);
  find(h, "ncclGetUniqueId", a.getUniqueId, missing, why);
  find(h, "ncclCommInitRank", a.commInitRank, missing, why);
  find(h, "ncclCommInitRankConfig", a.commInitRankConfig, missing, why);
  find(h, "ncclCommGetAsyncError", a.commGetAsyncError, missing, why);
  find(h, "ncclCommFinalize", a.commFinalize, missing, why);
  find(h, "ncclCommAbort", a.commAbort, missing, why);
  find(h, "ncclCommCount", a.commCount, missing, why);
  find(h, "ncclCommDestroy", a.commDestroy, missing, why);
  find(h, "ncclGroupStart", a.groupStart, missing, why);
  find(h, "ncclGroupEnd", a.groupEnd, missing, why);
  find(h, "ncclSend", a.send, missing, why);
  find(h, "ncclRecv", a.recv, missing, why);
  find(h, "ncclGetErrorString", a.getErrorString, missing, why);
  std::string where = name;
  link_map* lm = nullptr;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr && lm->l_name != nullptr && lm->l_name[0] != '\0') {
    where = lm->l_name;
  }
  if (!missing.empty()) {
    dlclose(h);
    if (where != name) where += std::string(" (opened as \"") + name + "\")";
    return where + " lacks " + missing + " (dlsym: " + why + ")";
  }
  std::string ignored, ignoredWhy;
  find(h, "ncclGetLastError", a.getLastError, ignored, ignoredWhy);
  api = a;
  file = where;
  return "";
}

void throwJava(JNIEnv* env, const char* cls, const std::string& msg) {
  if (env->ExceptionCheck()) return;
  jclass c = env->FindClass(cls);
  if (c == nullptr) return;  // NoClassDefFoundError already pending
  env->ThrowNew(c, msg.c_str());
}

// True when the library is loaded; otherwise throws IllegalStateException with the reason.
bool loaded(JNIEnv* env) {
  if (ready.load(std::memory_order_acquire)) return true;
  std::lock_guard<std::mutex> g(loadLock);
  throwJava(env, "java/lang/IllegalStateException",
            std::string(kSoname) + " is not loaded: " +
                (tried ? failure : std::string("NcclNative.load was not called (NcclAvailability.get() calls it)")));
  return false;
}

// True when ok; otherwise throws CudaException naming the call, NCCL's code, its text and NCCL's
// own last error when it has one.
bool check(JNIEnv* env, Result r, const char* call) {
  if (r == kSuccess) return true;
  const char* text = api.getErrorString(r);
  std::string msg = std::string(call) + " failed: " + std::to_string(r) + " (" + (text != nullptr ? text : "?") + ")";
  if (api.getLastError != nullptr) {
    const char* last = api.getLastError(nullptr);  // the comm argument is unused by NCCL
    if (last != nullptr && last[0] != '\0') msg += std::string("; NCCL's last error: ") + last;
  }
  throwJava(env, "io/moeyard/cuda/CudaException", msg);
  return false;
}

// check() that also lets ncclInProgress through: the call goes on in NCCL's threads, and the caller
// polls commReady for its outcome.
bool started(JNIEnv* env, Result r, const char* call) {
  return r == kInProgress || check(env, r, call);
}

template <typename T> T* ptr(jlong p) { return reinterpret_cast<T*>(static_cast<intptr_t>(p)); }
jlong handle(const void* p) { return static_cast<jlong>(reinterpret_cast<intptr_t>(p)); }

}  // namespace

#define NCCL_FN(ret, name) extern "C" JNIEXPORT ret JNICALL Java_io_moeyard_cuda_NcclNative_##name

// null when loaded (now or by an earlier call), else why not. The first call decides: a later
// call with another file returns the first outcome.
NCCL_FN(jstring, load)(JNIEnv* env, jclass, jstring path) {
  std::lock_guard<std::mutex> g(loadLock);
  if (!tried) {
    std::string p;
    if (path != nullptr) {
      const char* c = env->GetStringUTFChars(path, nullptr);
      if (c == nullptr) return nullptr;  // OutOfMemoryError pending
      p = c;
      env->ReleaseStringUTFChars(path, c);
    }
    failure = tryLoad(path != nullptr ? p.c_str() : nullptr);
    tried = true;
    if (failure.empty()) ready.store(true, std::memory_order_release);
  }
  return failure.empty() ? nullptr : env->NewStringUTF(failure.c_str());
}

// The file the loader picked for libnccl, null when not loaded.
NCCL_FN(jstring, library)(JNIEnv* env, jclass) {
  if (!ready.load(std::memory_order_acquire)) return nullptr;
  return env->NewStringUTF(file.c_str());
}

NCCL_FN(jint, version)(JNIEnv* env, jclass) {
  if (!loaded(env)) return 0;
  int v = 0;
  if (!check(env, api.getVersion(&v), "ncclGetVersion")) return 0;
  return v;
}

NCCL_FN(jbyteArray, uniqueId)(JNIEnv* env, jclass) {
  if (!loaded(env)) return nullptr;
  UniqueId id{};
  if (!check(env, api.getUniqueId(&id), "ncclGetUniqueId")) return nullptr;
  jbyteArray out = env->NewByteArray(kUniqueIdBytes);
  if (out != nullptr) env->SetByteArrayRegion(out, 0, kUniqueIdBytes, reinterpret_cast<const jbyte*>(id.internal));
  return out;
}

// ncclCommInitRank (blocking) or ncclCommInitRankConfig with blocking = 0, which returns at once
// with the communicator still being set up (commReady says when it is).
NCCL_FN(jlong, commInitRank)(JNIEnv* env, jclass, jbyteArray uniqueId, jint ranks, jint rank, jboolean blocking) {
  if (!loaded(env)) return 0;
  if (uniqueId == nullptr || env->GetArrayLength(uniqueId) != kUniqueIdBytes) {
    throwJava(env, "java/lang/IllegalArgumentException",
              "the unique id has " + std::to_string(uniqueId == nullptr ? -1 : env->GetArrayLength(uniqueId)) +
                  " bytes, NCCL's have " + std::to_string(kUniqueIdBytes));
    return 0;
  }
  UniqueId id{};
  env->GetByteArrayRegion(uniqueId, 0, kUniqueIdBytes, reinterpret_cast<jbyte*>(id.internal));
  Comm comm = nullptr;
  if (blocking) {
    if (!check(env, api.commInitRank(&comm, ranks, id, rank), "ncclCommInitRank")) return 0;
    return handle(comm);
  }
  Config config{sizeof(Config), kConfigMagic, kConfigVersion, 0};
  Result r = api.commInitRankConfig(&comm, ranks, id, rank, &config);
  if (r != kInProgress && r != kSuccess) {
    // NCCL may have made the communicator before it failed: abort it, so nothing is left behind
    if (comm != nullptr) api.commAbort(comm);
    check(env, r, "ncclCommInitRankConfig");
    return 0;
  }
  return handle(comm);
}

// ncclCommGetAsyncError: true when the communicator's last call is done, false while it is in
// progress; an error throws CudaException naming `call` (the call the caller waits for).
NCCL_FN(jboolean, commReady)(JNIEnv* env, jclass, jlong comm, jstring call) {
  if (!loaded(env)) return JNI_FALSE;
  Result state = kSuccess;
  if (!check(env, api.commGetAsyncError(ptr<void>(comm), &state), "ncclCommGetAsyncError")) return JNI_FALSE;
  if (state == kSuccess) return JNI_TRUE;
  if (state == kInProgress) return JNI_FALSE;
  std::string name = "NCCL";
  if (call != nullptr) {
    const char* c = env->GetStringUTFChars(call, nullptr);
    if (c == nullptr) return JNI_FALSE;  // OutOfMemoryError pending
    name = c;
    env->ReleaseStringUTFChars(call, c);
  }
  check(env, state, name.c_str());
  return JNI_FALSE;
}

NCCL_FN(void, commFinalize)(JNIEnv* env, jclass, jlong comm) {
  if (!loaded(env)) return;
  started(env, api.commFinalize(ptr<void>(comm)), "ncclCommFinalize");
}

NCCL_FN(void, commAbort)(JNIEnv* env, jclass, jlong comm) {
  if (!loaded(env)) return;
  // NCCL runs an abort (and a destroy) as a blocking group whatever the communicator's mode, after
  // joining a set-up or group still in progress, so ncclInProgress is not expected; it is
  // let through all the same, since nothing here could wait for it
  started(env, api.commAbort(ptr<void>(comm)), "ncclCommAbort");
}

NCCL_FN(jint, commCount)(JNIEnv* env, jclass, jlong comm) {
  if (!loaded(env)) return 0;
  int n = 0;
  if (!check(env, api.commCount(ptr<void>(comm), &n), "ncclCommCount")) return 0;
  return n;
}

NCCL_FN(void, commDestroy)(JNIEnv* env, jclass, jlong comm) {
  if (!loaded(env)) return;
  started(env, api.commDestroy(ptr<void>(comm)), "ncclCommDestroy");
}

NCCL_FN(void, groupStart)(JNIEnv* env, jclass) {
  if (!loaded(env)) return;
  check(env, api.groupStart(), "ncclGroupStart");
}

NCCL_FN(void, groupEnd)(JNIEnv* env, jclass) {
  if (!loaded(env)) return;
  started(env, api.groupEnd(), "ncclGroupEnd");
}

NCCL_FN(void, send)(JNIEnv* env, jclass, jlong address, jlong bytes, jint peer, jlong comm, jlong stream) {
  if (!loaded(env)) return;
  if (bytes < 0) {
    throwJava(env, "java/lang/IllegalArgumentException", "ncclSend of " + std::to_string(bytes) + " bytes");
    return;
  }
  started(env, api.send(ptr<const void>(address), (size_t)bytes, kUint8, peer, ptr<void>(comm), ptr<void>(stream)),
          "ncclSend");
}

NCCL_FN(void, recv)(JNIEnv* env, jclass, jlong address, jlong bytes, jint peer, jlong comm, jlong stream) {
  if (!loaded(env)) return;
  if (bytes < 0) {
    throwJava(env, "java/lang/IllegalArgumentException", "ncclRecv of " + std::to_string(bytes) + " bytes");
    return;
  }
  started(env, api.recv(ptr<void>(address), (size_t)bytes, kUint8, peer, ptr<void>(comm), ptr<void>(stream)),
          "ncclRecv");
}
