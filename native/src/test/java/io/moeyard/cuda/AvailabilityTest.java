package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The backend reports itself cleanly on every machine: available, or one clear reason. */
class AvailabilityTest {

  @Test
  void availabilityNeverThrowsAndIsConsistent() {
    CudaAvailability a = CudaBackend.availability();
    assertNotNull(a);
    System.out.println("AvailabilityTest: " + a.message());
    if (a.available()) {
      assertNull(a.reason());
      assertTrue(a.deviceCount() > 0);
      assertTrue(a.message().startsWith("CUDA backend available: "), a.message());
    } else {
      assertNotNull(a.reason());
      assertFalse(a.reason().isBlank());
      assertEquals(CudaAvailability.UNAVAILABLE + a.reason(), a.message());
      assertEquals(0, a.deviceCount());
      // The same object on every call: probed once.
      assertTrue(a == CudaBackend.availability());
    }
  }

  @Test
  void openWithoutGpuThrowsTheReason() {
    CudaAvailability a = CudaBackend.availability();
    Assumptions.assumeFalse(a.available(), "a GPU is available here");
    var cfg = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
    CudaUnavailableException e =
        assertThrows(CudaUnavailableException.class, () -> CudaWorld.open(cfg.map(), cfg.comm()));
    assertEquals(a.message(), e.getMessage());
    assertTrue(e.getMessage().startsWith("CUDA backend unavailable: "), e.getMessage());
  }

  /** Where the library loads but no driver exists (this machine, CI), the reason names the driver. */
  @Test
  void noDriverIsReportedNotCrashed() {
    NativeTestSupport.requireLibrary();
    String driver = NativeKernels.driverProbe();
    Assumptions.assumeTrue(driver != null, "an NVIDIA driver is installed here");
    assertTrue(driver.contains("libcuda.so.1"), driver);
    // cudaGetDeviceCount must return an error code, not crash the JVM.
    int n = NativeKernels.deviceCount();
    assertTrue(n < 0, "deviceCount without a driver: " + n);
    String err = NativeKernels.errorString(-n);
    System.out.println("AvailabilityTest: deviceCount -> " + n + " = " + err);
    assertTrue(err.startsWith("cuda"), err);
    CudaAvailability a = CudaBackend.availability();
    assertFalse(a.available());
    assertTrue(a.message().contains("libcuda.so.1"), a.message());
  }

  @Test
  void libraryReportsVersionAndLimits() {
    NativeTestSupport.requireLibrary();
    String v = NativeKernels.version();
    assertTrue(v.startsWith("moeyard_cuda "), v);
    assertTrue(NativeKernels.runtimeVersion() >= 13000, "runtime " + NativeKernels.runtimeVersion());
    int[] lim = NativeKernels.limits();
    assertEquals(16, lim[0], "kMaxTopk");
    assertEquals(64, lim[1], "kMaxRanks");
    assertEquals(128, lim[5], "kFp8ScaleBlock");
  }

  /** Each way of not loading gives its own reason, in a fresh JVM (the load is once per JVM). */
  @Test
  void eachLoadFailureHasItsReason(@TempDir Path tmp) throws Exception {
    Path classes = Path.of(NativeLibrary.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    Path tests = Path.of(ProbeMain.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    // 1. -Dmoeyard.native.lib names a missing file
    String out = probe(classes + java.io.File.pathSeparator + tests, "-Dmoeyard.native.lib=" + tmp.resolve("nope.so"));
    assertTrue(out.contains("CUDA backend unavailable: -Dmoeyard.native.lib=") && out.contains("does not name a file"), out);
    // 2. -Dmoeyard.native.lib names a file that is not a library
    Path junk = Files.writeString(tmp.resolve("junk.so"), "not an ELF file");
    out = probe(classes + java.io.File.pathSeparator + tests, "-Dmoeyard.native.lib=" + junk);
    assertTrue(out.contains("CUDA backend unavailable: cannot load " + junk), out);
    // 3. a class path without the library (what a build without nvcc packages)
    Path bare = tmp.resolve("bare");
    try (var files = Files.walk(classes)) {
      for (Path f : (Iterable<Path>) files::iterator) {
        if (f.toString().endsWith(".class")) {
          Path to = bare.resolve(classes.relativize(f).toString());
          Files.createDirectories(to.getParent());
          Files.copy(f, to);
        }
      }
    }
    out = probe(bare + java.io.File.pathSeparator + tests);
    assertTrue(out.contains("CUDA backend unavailable: no native library in the jar"), out);
    // 4. the local build, through the property, loads (no driver here: the reason is the driver)
    Path lib = classes.resolve("native/linux-x86_64/libmoeyard_cuda.so");
    if (Files.exists(lib)) {
      out = probe(bare + java.io.File.pathSeparator + tests, "-Dmoeyard.native.lib=" + lib);
      assertFalse(out.contains("no native library") || out.contains("cannot load"), out);
      assertTrue(out.contains("CUDA backend"), out);
    }
  }

  private static String probe(String classPath, String... props) throws Exception {
    String javaCmd = ProcessHandle.current().info().command().orElse("java");
    List<String> cmd = new ArrayList<>(List.of(javaCmd, "--enable-native-access=ALL-UNNAMED", "-cp", classPath));
    cmd.addAll(List.of(props));
    cmd.add(ProbeMain.class.getName());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe JVM hung");
    assertEquals(0, p.exitValue(), "probe JVM crashed: " + out);
    System.out.println("AvailabilityTest probe " + List.of(props) + ": " + out.strip());
    return out;
  }
}
