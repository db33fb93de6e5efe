package io.moeyard.cuda;

/**
 * Whether the CUDA backend can run here, and if not, why. Probed once: loads the library, checks
 * the driver ({@code libcuda.so.1}) and counts devices; never throws and never crashes, also on
 * machines without a GPU, a driver, or a library in the jar.
 *
 * @param available true when the library loaded and at least one device answered
 * @param reason why not (null when available)
 * @param deviceCount devices seen (0 when unavailable)
 * @param device name of device 0 (null when unavailable)
 * @param library version string of the loaded library (null when it did not load)
 */
public record CudaAvailability(
    boolean available, String reason, int deviceCount, String device, String library) {

  /** Prefix of every unavailable message. */
  public static final String UNAVAILABLE = "CUDA backend unavailable: ";

  private static CudaAvailability cached;

  /** The probe result, computed on first use. */
  public static synchronized CudaAvailability get() {
    if (cached == null) {
      cached = probe();
    }
    return cached;
  }

  /** "CUDA backend available: ..." or "CUDA backend unavailable: &lt;reason&gt;". */
  public String message() {
    return available
        ? "CUDA backend available: " + deviceCount + " device(s), device 0 " + device + "; " + library
        : UNAVAILABLE + reason;
  }

  /** Throws {@link CudaUnavailableException} with {@link #message()} unless available. */
  public void require() {
    if (!available) {
      throw new CudaUnavailableException(message());
    }
  }

  private static CudaAvailability unavailable(String reason, String library) {
    return new CudaAvailability(false, reason, 0, null, library);
  }

  private static CudaAvailability probe() {
    NativeLibrary.Status lib = NativeLibrary.load();
    if (!lib.loaded()) {
      return unavailable(lib.reason(), null);
    }
    String version = null;
    try {
      version = NativeKernels.version();
      String driver = NativeKernels.driverProbe();
      if (driver != null) {
        return unavailable("no NVIDIA driver: " + driver, version);
      }
      int n = NativeKernels.deviceCount();
      if (n < 0) {
        return unavailable(
            "cudaGetDeviceCount failed: " + NativeKernels.errorString(-n), version);
      }
      if (n == 0) {
        return unavailable("no CUDA device", version);
      }
      return new CudaAvailability(true, null, n, NativeKernels.deviceName(0), version);
    } catch (RuntimeException | LinkageError e) {
      return unavailable("probe failed: " + e, version);
    }
  }
}
