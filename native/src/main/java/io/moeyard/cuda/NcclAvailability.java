package io.moeyard.cuda;

/**
 * Whether NCCL can be used from this JVM, through which binding, and if not, why: the start of the
 * {@code nccl} backend (one process per GPU, NCCL grouped send/recv between them). Probed once;
 * never throws and never crashes, also without a GPU, a driver, NCCL's library or its Java
 * bindings.
 *
 * <p>Two bindings, tried in this order:
 * <ol>
 *   <li>{@link Binding#MOEYARD}: {@code libmoeyard_cuda.so} opens {@code libnccl.so.2} itself
 *       ({@code dlopen}, found through the loader's search path, {@code LD_LIBRARY_PATH} included,
 *       or the file named by {@code -Dmoeyard.nccl.lib=FILE}) and asks it for its version. Preferred:
 *       it needs nothing but NCCL's library (a GPU run's bundle cannot carry the presets' natives),
 *       it loads no second CUDA runtime beside the kernels' static one, and a call allocates
 *       nothing on the Java heap (the bindings wrap every address in a fresh {@code Pointer}).</li>
 *   <li>{@link Binding#BYTEDECO}: the org.bytedeco CUDA presets ({@code org.bytedeco:cuda},
 *       package {@code org.bytedeco.cuda.global.nccl}), an optional dependency of this module, for
 *       a JVM that has them but no {@code libmoeyard_cuda.so} or no {@code libnccl.so.2} on the
 *       loader's path (the presets' natives carry their own). {@code LD_BIND_NOW} must not be set:
 *       those presets wrap a few CUDA 13.1-only functions that a 13.0 driver lacks, bound
 *       lazily.</li>
 * </ol>
 * When neither works the reason gives both failures, e.g. {@code dlopen("libnccl.so.2") failed:
 * libnccl.so.2: cannot open shared object file: No such file or directory (...); and NCCL's Java
 * bindings (...) are not on the class path}.
 *
 * @param available true when NCCL answered {@code ncclGetVersion}
 * @param reason why not (null when available)
 * @param version NCCL's version code ({@code major * 10000 + minor * 100 + patch}), 0 when unavailable
 * @param binding the binding in use (null when unavailable)
 * @param library the libnccl file {@link Binding#MOEYARD} opened (null otherwise)
 */
public record NcclAvailability(boolean available, String reason, int version, Binding binding, String library) {

  /** How this JVM reaches NCCL. */
  public enum Binding {
    /** {@code libmoeyard_cuda.so}'s own {@code dlopen} of {@code libnccl.so.2}. */
    MOEYARD,
    /** The org.bytedeco CUDA presets' Java bindings. */
    BYTEDECO
  }

  /** Prefix of every unavailable message. */
  public static final String UNAVAILABLE = "NCCL unavailable: ";

  static final String BINDINGS = "org.bytedeco.cuda.global.nccl";

  private static NcclAvailability cached;

  /** The probe result, computed on first use. */
  public static synchronized NcclAvailability get() {
    if (cached == null) cached = probe();
    return cached;
  }

  /**
   * "NCCL available: version ... (libnccl.so.2 opened by libmoeyard_cuda.so: FILE)" (or "(through
   * org.bytedeco:cuda's bindings)"), or "NCCL unavailable: &lt;reason&gt;".
   */
  public String message() {
    if (!available) return UNAVAILABLE + reason;
    return "NCCL available: version " + version + (binding == Binding.MOEYARD
        ? " (" + NcclNative.SONAME + " opened by libmoeyard_cuda.so: " + library + ")"
        : " (through org.bytedeco:cuda's bindings)");
  }

  /** Throws {@link CudaUnavailableException} with {@link #message()} unless available. */
  public void require() {
    if (!available) throw new CudaUnavailableException(message());
  }

  /** {@link NcclChannel}'s calls through the binding in use; {@link #require()} first. */
  NcclChannel.Nccl channelCalls() {
    require();
    return binding == Binding.MOEYARD ? NcclNative.CHANNEL : NcclCalls.CHANNEL;
  }

  /** A fresh unique id ({@code ncclGetUniqueId}) through the binding in use. */
  byte[] uniqueId() {
    require();
    byte[] id = binding == Binding.MOEYARD ? NcclNative.uniqueId() : NcclCalls.uniqueId();
    if (id.length != NcclUniqueIds.BYTES) {
      throw new IllegalStateException("NCCL's unique id has " + id.length + " bytes, this code expects " + NcclUniqueIds.BYTES);
    }
    return id;
  }

  private static NcclAvailability unavailable(String reason) {
    return new NcclAvailability(false, reason, 0, null, null);
  }

  static NcclAvailability probe() {
    NcclAvailability own = probeOwn();
    if (own.available) return own;
    NcclAvailability bound = probeBindings();
    if (bound.available) return bound;
    return unavailable(own.reason + "; and " + bound.reason);
  }

  private static NcclAvailability probeOwn() {
    NativeLibrary.Status lib = NativeLibrary.load();
    if (!lib.loaded()) {
      return unavailable("libmoeyard_cuda.so, which opens " + NcclNative.SONAME + " itself, did not load: " + lib.reason());
    }
    try {
      String file = System.getProperty(NcclNative.PROPERTY);
      if (file != null && file.isBlank()) file = null;
      String failed = NcclNative.load(file);
      if (failed != null) {
        return unavailable(failed + (file == null
            ? " (put the folder holding " + NcclNative.SONAME + " on LD_LIBRARY_PATH, or name the file with -D" + NcclNative.PROPERTY + "=FILE)"
            : " (-D" + NcclNative.PROPERTY + "=" + file + ")"));
      }
      return new NcclAvailability(true, null, NcclNative.version(), Binding.MOEYARD, NcclNative.library());
    } catch (CudaException e) {
      return unavailable(NcclNative.library() + ": " + e.getMessage());
    } catch (RuntimeException | LinkageError e) {
      return unavailable("libmoeyard_cuda.so's NCCL probe failed: " + e);
    }
  }

  private static NcclAvailability probeBindings() {
    try {
      Class.forName(BINDINGS, false, NcclAvailability.class.getClassLoader());
    } catch (ClassNotFoundException | LinkageError e) {
      return unavailable("NCCL's Java bindings (org.bytedeco:cuda, " + BINDINGS + ") are not on the class path");
    }
    try {
      int v = NcclCalls.version();
      return new NcclAvailability(true, null, v, Binding.BYTEDECO, null);
    } catch (CudaException e) {
      return unavailable("NCCL's Java bindings: " + e.getMessage());
    } catch (UnsatisfiedLinkError | NoClassDefFoundError | ExceptionInInitializerError e) {
      Throwable c = e instanceof ExceptionInInitializerError && e.getCause() != null ? e.getCause() : e;
      return unavailable("NCCL's Java bindings cannot load their libraries: " + c);
    } catch (RuntimeException | LinkageError e) {
      return unavailable("NCCL's Java bindings failed: " + e);
    }
  }
}
