package io.moeyard.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads {@code libmoeyard_cuda.so} once per class loader: from {@code -Dmoeyard.native.lib=PATH}
 * (a local build) when that property is set, else extracted from this jar
 * ({@value #RESOURCE}) into a fresh temporary folder. Never throws: every failure becomes a
 * {@link Status} with a reason a person can act on.
 */
public final class NativeLibrary {

  /** System property naming a local build of the library; overrides the copy in the jar. */
  public static final String PROPERTY = "moeyard.native.lib";

  /** Where the build puts the library inside the jar. */
  public static final String RESOURCE = "/native/linux-x86_64/libmoeyard_cuda.so";

  /** Outcome of the one load attempt. */
  public record Status(boolean loaded, String path, String reason) {
    static Status ok(String path) {
      return new Status(true, path, null);
    }

    static Status failed(String reason) {
      return new Status(false, null, reason);
    }
  }

  private static Status status;

  private NativeLibrary() {}

  /** Loads the library if not done yet; returns the (cached) outcome. */
  public static synchronized Status load() {
    if (status == null) {
      status = tryLoad();
    }
    return status;
  }

  /** Whether this jar (class path) carries the library, i.e. the build had nvcc. */
  public static boolean packaged() {
    return NativeLibrary.class.getResource(RESOURCE) != null;
  }

  private static Status tryLoad() {
    String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
    String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
    String local = System.getProperty(PROPERTY);
    if (local != null && !local.isBlank()) {
      Path p = Path.of(local).toAbsolutePath();
      if (!Files.isRegularFile(p)) {
        return Status.failed("-D" + PROPERTY + "=" + local + " does not name a file");
      }
      return loadFile(p, "-D" + PROPERTY);
    }
    if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
      return Status.failed(
          "no native library for " + os + "/" + arch + " (only linux-x86_64 is built)");
    }
    if (!packaged()) {
      return Status.failed(
          "no native library in the jar (it was built without nvcc); build where nvcc exists or"
              + " point -D" + PROPERTY + " at a local libmoeyard_cuda.so");
    }
    Path file;
    try {
      Path tmp = Path.of(System.getProperty("java.io.tmpdir", "/tmp"));
      Files.createDirectories(tmp);
      Path dir = Files.createTempDirectory(tmp, "moeyard-native-");
      dir.toFile().deleteOnExit(); // deleteOnExit runs in reverse order: the file goes first
      file = dir.resolve("libmoeyard_cuda.so");
      try (InputStream in = NativeLibrary.class.getResourceAsStream(RESOURCE)) {
        if (in == null) {
          return Status.failed("native library resource " + RESOURCE + " vanished");
        }
        Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
      }
      file.toFile().deleteOnExit();
    } catch (IOException | SecurityException e) {
      return Status.failed("cannot extract the native library to java.io.tmpdir: " + e);
    }
    return loadFile(file, "the jar");
  }

  private static Status loadFile(Path p, String from) {
    try {
      System.load(p.toString());
    } catch (UnsatisfiedLinkError | SecurityException e) {
      return Status.failed("cannot load " + p + " (from " + from + "): " + e.getMessage());
    }
    try {
      NativeKernels.version(); // the symbols really link
    } catch (UnsatisfiedLinkError e) {
      return Status.failed(p + " (from " + from + ") is not a matching moeyard library: " + e);
    }
    return Status.ok(p.toString());
  }
}
