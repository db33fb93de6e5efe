package io.moeyard.cuda;

import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclConfig_t;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

/**
 * The NCCL calls made through the org.bytedeco bindings ({@link NcclAvailability.Binding#BYTEDECO}).
 * A class of its own so that nothing else links against the bindings: it is loaded only after
 * {@link NcclAvailability} found them on the class path.
 */
final class NcclCalls {
  private NcclCalls() {}

  /** Loads the bindings' natives and asks NCCL for its version. */
  static int version() {
    Loader.load(nccl.class);
    int[] v = new int[1];
    check(nccl.ncclGetVersion(v), "ncclGetVersion");
    return v[0];
  }

  /** A fresh NCCL unique id ({@code ncclGetUniqueId}): its bytes. */
  static byte[] uniqueId() {
    ncclUniqueId id = new ncclUniqueId();
    try {
      int rc = nccl.ncclGetUniqueId(id);
      if (rc != nccl.ncclSuccess) throw new CudaException("ncclGetUniqueId failed: " + error(rc));
      byte[] b = new byte[nccl.NCCL_UNIQUE_ID_BYTES];
      id.internal().get(b);
      return b;
    } finally {
      id.close();
    }
  }

  /** {@link NcclChannel}'s calls through the bindings. */
  static final NcclChannel.Nccl CHANNEL = new NcclChannel.Nccl() {
    @Override
    public long commInitRank(byte[] uniqueId, int ranks, int rank) {
      ncclUniqueId id = new ncclUniqueId();
      try {
        id.internal().put(uniqueId);
        ncclComm comm = new ncclComm();
        // non-blocking, as libmoeyard_cuda.so's entry point makes it: the config states the size
        // of NCCL 2.14's (size, magic, version, blocking), and NCCL reads that much over its defaults
        try (ncclConfig_t config = new ncclConfig_t()) {
          config.size(SHORT_CONFIG_BYTES).magic(CONFIG_MAGIC).version(CONFIG_VERSION).blocking(0);
          int rc = nccl.ncclCommInitRankConfig(comm, ranks, id, rank, config);
          if (rc != nccl.ncclSuccess && rc != nccl.ncclInProgress) {
            if (!comm.isNull()) nccl.ncclCommAbort(comm);
            check(rc, "ncclCommInitRankConfig");
          }
        }
        return comm.address();
      } finally {
        id.close();
      }
    }

    @Override
    public boolean commReady(long comm, String call) {
      int[] state = new int[1];
      check(nccl.ncclCommGetAsyncError(new ncclComm(new Address(comm)), state), "ncclCommGetAsyncError");
      if (state[0] == nccl.ncclSuccess) return true;
      if (state[0] == nccl.ncclInProgress) return false;
      check(state[0], call);
      return false;
    }

    @Override
    public void commFinalize(long comm) {
      started(nccl.ncclCommFinalize(new ncclComm(new Address(comm))), "ncclCommFinalize");
    }

    @Override
    public void commAbort(long comm) {
      started(nccl.ncclCommAbort(new ncclComm(new Address(comm))), "ncclCommAbort");
    }

    @Override
    public int commCount(long comm) {
      int[] n = new int[1];
      check(nccl.ncclCommCount(new ncclComm(new Address(comm)), n), "ncclCommCount");
      return n[0];
    }

    @Override
    public void commDestroy(long comm) {
      started(nccl.ncclCommDestroy(new ncclComm(new Address(comm))), "ncclCommDestroy");
    }

    @Override
    public void groupStart() {
      check(nccl.ncclGroupStart(), "ncclGroupStart");
    }

    @Override
    public void groupEnd() {
      started(nccl.ncclGroupEnd(), "ncclGroupEnd");
    }

    @Override
    public void send(long address, long bytes, int peer, long comm, long stream) {
      started(nccl.ncclSend(new Address(address), bytes, nccl.ncclUint8, peer, new ncclComm(new Address(comm)), stream(stream)),
          "ncclSend");
    }

    @Override
    public void recv(long address, long bytes, int peer, long comm, long stream) {
      started(nccl.ncclRecv(new Address(address), bytes, nccl.ncclUint8, peer, new ncclComm(new Address(comm)), stream(stream)),
          "ncclRecv");
    }
  };

  /** A raw address as the bindings take one (the bindings own nothing here: no deallocator). */
  private static final class Address extends Pointer {
    Address(long a) {
      address = a;
    }
  }

  private static CUstream_st stream(long stream) {
    return stream == 0 ? null : new CUstream_st(new Address(stream));
  }

  /** NCCL 2.14's ncclConfig_t: size_t size, unsigned magic, unsigned version, int blocking, padded. */
  private static final long SHORT_CONFIG_BYTES = 24;
  private static final int CONFIG_MAGIC = 0xcafebeef;
  private static final int CONFIG_VERSION = 21400; // NCCL_VERSION(2, 14, 0)

  /** check() that lets ncclInProgress through: a non-blocking communicator's call goes on in NCCL. */
  private static void started(int rc, String call) {
    if (rc != nccl.ncclInProgress) check(rc, call);
  }

  private static void check(int rc, String call) {
    if (rc != nccl.ncclSuccess) throw new CudaException(call + " failed: " + error(rc));
  }

  private static String error(int rc) {
    return rc + " (" + nccl.ncclGetErrorString(rc).getString() + ")";
  }
}
