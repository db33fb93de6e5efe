package io.moeyard.cuda;

/**
 * Whether NCCL can be used from this JVM, and if not, why: the start of the {@code nccl} backend
 * (one process per GPU, NCCL grouped send/recv between them). Probed once; never throws and never
 * crashes, also without a GPU, a driver, NCCL's library or its Java bindings.
 *
 * <p>NCCL comes from the org.bytedeco CUDA presets ({@code org.bytedeco:cuda}, package
 * {@code org.bytedeco.cuda.global.nccl}), an optional dependency of this module: the probe first
 * looks for the bindings' classes, then loads their natives (the presets' JNI libraries and
 * {@code libnccl.so.2}) and asks NCCL for its version. {@code LD_BIND_NOW} must not be set: those
 * presets wrap a few CUDA 13.1-only functions that a 13.0 driver lacks, bound lazily.
 *
 * @param available true when NCCL answered {@code ncclGetVersion}
 * @param reason why not (null when available)
 * @param version NCCL's version code ({@code major * 10000 + minor * 100 + patch}), 0 when unavailable
 */
public record NcclAvailability(boolean available, String reason, int version) {

  /** Prefix of every unavailable message. */
  public static final String UNAVAILABLE = "NCCL unavailable: ";

  static final String BINDINGS = "org.bytedeco.cuda.global.nccl";

  private static NcclAvailability cached;

  /** The probe result, computed on first use. */
  public static synchronized NcclAvailability get() {
    if (cached == null) cached = probe();
    return cached;
  }

  /** "NCCL available: version ..." or "NCCL unavailable: &lt;reason&gt;". */
  public String message() {
    return available ? "NCCL available: version " + version : UNAVAILABLE + reason;
  }

  /** Throws {@link CudaUnavailableException} with {@link #message()} unless available. */
  public void require() {
    if (!available) throw new CudaUnavailableException(message());
  }

  static NcclAvailability probe() {
    try {
      Class.forName(BINDINGS, false, NcclAvailability.class.getClassLoader());
    } catch (ClassNotFoundException | LinkageError e) {
      return new NcclAvailability(false, "NCCL's Java bindings (org.bytedeco:cuda, " + BINDINGS + ") are not on the class path", 0);
    }
    try {
      return NcclCalls.version();
    } catch (UnsatisfiedLinkError | NoClassDefFoundError | ExceptionInInitializerError e) {
      Throwable c = e instanceof ExceptionInInitializerError && e.getCause() != null ? e.getCause() : e;
      return new NcclAvailability(false, "NCCL's libraries cannot be loaded: " + c, 0);
    } catch (RuntimeException | LinkageError e) {
      return new NcclAvailability(false, "probe failed: " + e, 0);
    }
  }
}
