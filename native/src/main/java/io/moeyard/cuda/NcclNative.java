package io.moeyard.cuda;

/**
 * NCCL through {@code libmoeyard_cuda.so}'s own {@code dlopen} of {@code libnccl.so.2}
 * (nccl_glue.cpp): the binding {@link NcclAvailability} tries first. The library links nothing of
 * NCCL; {@link #load} opens it at run time and looks up the functions these entry points call.
 * Every entry point but {@code load} and {@code library} throws {@link IllegalStateException} with
 * the load's reason until a load succeeded; a failed NCCL call throws {@link CudaException}
 * ("ncclSend failed: 5 (invalid usage); NCCL's last error: ..."). Nothing here touches CUDA:
 * addresses and streams pass through to NCCL as they are.
 */
final class NcclNative {
  private NcclNative() {}

  /** The file name the loader searches for (LD_LIBRARY_PATH, the cache, the default folders). */
  static final String SONAME = "libnccl.so.2";

  /** System property naming the libnccl file to open instead of searching for {@value #SONAME}. */
  static final String PROPERTY = "moeyard.nccl.lib";

  /**
   * Opens {@code file} (null: {@value #SONAME} by the loader's search) and looks up NCCL's
   * functions: null when done, else why not (dlerror(), or the functions the file lacks). The
   * first call decides for the life of the library.
   */
  static native String load(String file);

  /** The libnccl file loaded (as the loader found it), null when none. */
  static native String library();

  /** ncclGetVersion: major * 10000 + minor * 100 + patch. */
  static native int version();

  /** ncclGetUniqueId: the id's 128 bytes. */
  static native byte[] uniqueId();

  /**
   * The communicator's address: blocking, {@code ncclCommInitRank}, which returns once every rank
   * has called it; else {@code ncclCommInitRankConfig} with {@code blocking = 0}, which returns at
   * once while NCCL sets the communicator up ({@link #commReady} says when it is done).
   */
  static native long commInitRank(byte[] uniqueId, int ranks, int rank, boolean blocking);

  /**
   * {@code ncclCommGetAsyncError}: true when the communicator's last call finished, false while
   * it is in progress; an error throws {@link CudaException} naming {@code call}.
   */
  static native boolean commReady(long comm, String call);

  /** {@code ncclCommFinalize}: may return with the finalization in progress ({@link #commReady}). */
  static native void commFinalize(long comm);

  /** {@code ncclCommAbort}: frees the communicator at once, whatever it was doing. */
  static native void commAbort(long comm);

  static native int commCount(long comm);

  static native void commDestroy(long comm);

  static native void groupStart();

  static native void groupEnd();

  /** ncclSend of {@code bytes} ncclUint8 at {@code address} to {@code peer} on {@code stream}. */
  static native void send(long address, long bytes, int peer, long comm, long stream);

  /** ncclRecv of {@code bytes} ncclUint8 into {@code address} from {@code peer} on {@code stream}. */
  static native void recv(long address, long bytes, int peer, long comm, long stream);

  /** {@link NcclChannel}'s calls through these entry points (no allocation per call). */
  static final NcclChannel.Nccl CHANNEL = new NcclChannel.Nccl() {
    @Override
    public long commInitRank(byte[] uniqueId, int ranks, int rank) {
      return NcclNative.commInitRank(uniqueId, ranks, rank, false);
    }

    @Override
    public boolean commReady(long comm, String call) {
      return NcclNative.commReady(comm, call);
    }

    @Override
    public void commFinalize(long comm) {
      NcclNative.commFinalize(comm);
    }

    @Override
    public void commAbort(long comm) {
      NcclNative.commAbort(comm);
    }

    @Override
    public int commCount(long comm) {
      return NcclNative.commCount(comm);
    }

    @Override
    public void commDestroy(long comm) {
      NcclNative.commDestroy(comm);
    }

    @Override
    public void groupStart() {
      NcclNative.groupStart();
    }

    @Override
    public void groupEnd() {
      NcclNative.groupEnd();
    }

    @Override
    public void send(long address, long bytes, int peer, long comm, long stream) {
      NcclNative.send(address, bytes, peer, comm, stream);
    }

    @Override
    public void recv(long address, long bytes, int peer, long comm, long stream) {
      NcclNative.recv(address, bytes, peer, comm, stream);
    }
  };
}
