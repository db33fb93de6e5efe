package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.fail;

import org.junit.jupiter.api.Assumptions;

/** How tests decide between running, skipping with the reason, and failing. */
final class NativeTestSupport {

  private NativeTestSupport() {}

  /**
   * The host tests need the library, not a GPU. Skip (with the reason) only where the build had no
   * nvcc; where the jar carries the library, or -Dmoeyard.native.required=true, not loading it is a
   * failure.
   */
  static void requireLibrary() {
    NativeLibrary.Status s = NativeLibrary.load();
    if (s.loaded()) {
      return;
    }
    String msg = CudaAvailability.UNAVAILABLE + s.reason();
    if (NativeLibrary.packaged() || Boolean.getBoolean("moeyard.native.required")) {
      fail("the native library must load here but did not: " + msg);
    }
    Assumptions.abort(msg);
  }

  /** GPU tests: skip with "CUDA backend unavailable: <reason>" where there is no usable GPU. */
  static void requireGpu() {
    CudaAvailability a = CudaBackend.availability();
    Assumptions.assumeTrue(a.available(), a::message);
  }

}
