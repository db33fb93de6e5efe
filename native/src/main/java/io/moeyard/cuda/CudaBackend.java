package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.ExpertMap;

/**
 * The {@code cuda} backend's entry points that need no device: whether it can run here, and
 * whether its kernels take a shape. The backend itself is {@link CudaWorld} (R virtual ranks on one
 * GPU) and its per-rank {@link CudaCommunicator}s.
 */
public final class CudaBackend {
  private CudaBackend() {}

  /** Whether the backend can run here, and if not why; never throws. */
  public static CudaAvailability availability() {
    return CudaAvailability.get();
  }

  /** Throws {@link IllegalArgumentException} naming the value when the kernels cannot run this shape; touches no device. */
  public static void check(ExpertMap map, CommConfig config) {
    KernelShape.of(map, config);
  }
}
