package io.moeyard.cuda;

import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclComm;
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
        check(nccl.ncclCommInitRank(comm, ranks, id, rank), "ncclCommInitRank");
        return comm.address();
      } finally {
        id.close();
      }
    }

    @Override
    public int commCount(long comm) {
      int[] n = new int[1];
      check(nccl.ncclCommCount(new ncclComm(new Address(comm)), n), "ncclCommCount");
      return n[0];
    }

    @Override
    public void commDestroy(long comm) {
      check(nccl.ncclCommDestroy(new ncclComm(new Address(comm))), "ncclCommDestroy");
    }

    @Override
    public void groupStart() {
      check(nccl.ncclGroupStart(), "ncclGroupStart");
    }

    @Override
    public void groupEnd() {
      check(nccl.ncclGroupEnd(), "ncclGroupEnd");
    }

    @Override
    public void send(long address, long bytes, int peer, long comm, long stream) {
      check(nccl.ncclSend(new Address(address), bytes, nccl.ncclUint8, peer, new ncclComm(new Address(comm)), stream(stream)),
          "ncclSend");
    }

    @Override
    public void recv(long address, long bytes, int peer, long comm, long stream) {
      check(nccl.ncclRecv(new Address(address), bytes, nccl.ncclUint8, peer, new ncclComm(new Address(comm)), stream(stream)),
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

  private static void check(int rc, String call) {
    if (rc != nccl.ncclSuccess) throw new CudaException(call + " failed: " + error(rc));
  }

  private static String error(int rc) {
    return rc + " (" + nccl.ncclGetErrorString(rc).getString() + ")";
  }
}
