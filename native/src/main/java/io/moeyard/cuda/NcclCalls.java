package io.moeyard.cuda;

import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.Loader;

/**
 * The NCCL calls made through the org.bytedeco bindings. A class of its own so that nothing else
 * links against the bindings: it is loaded only after {@link NcclAvailability} found them on the
 * class path.
 */
final class NcclCalls {
  private NcclCalls() {}

  /** Loads the bindings' natives and asks NCCL for its version. */
  static NcclAvailability version() {
    Loader.load(nccl.class);
    int[] v = new int[1];
    int rc = nccl.ncclGetVersion(v);
    if (rc != nccl.ncclSuccess) {
      return new NcclAvailability(false, "ncclGetVersion failed: " + error(rc), 0);
    }
    return new NcclAvailability(true, null, v[0]);
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

  static int uniqueIdBytes() {
    return nccl.NCCL_UNIQUE_ID_BYTES;
  }

  private static String error(int rc) {
    return rc + " (" + nccl.ncclGetErrorString(rc).getString() + ")";
  }
}
