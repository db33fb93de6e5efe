package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.io.File;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * NCCL through libmoeyard_cuda.so's own dlopen, end to end without a GPU: the test builds a stub
 * libnccl.so.2 with gcc (nccl_stub.c in the test resources: a world of one on host memory, strict
 * about groups, sizes, datatype and ids) and runs {@link NcclStubMain} in child JVMs (the load
 * happens once per JVM, and LD_LIBRARY_PATH is read at process start): found through
 * LD_LIBRARY_PATH as on the GPU machine, the probe, unique ids, NcclChannel's grouped exchange,
 * wrap / close ownership and the error texts all run through the JNI entry points; named with
 * -Dmoeyard.nccl.lib, a stub without ncclRecv and a missing file each give their reason. Skipped
 * where gcc is missing or the build had no nvcc (no libmoeyard_cuda.so).
 */
class NcclStubTest {
  @TempDir Path tmp;

  @BeforeEach
  void libraryAndGcc() {
    NativeTestSupport.requireLibrary();
    Assumptions.assumeTrue(onPath("gcc"), "gcc not found on PATH: the stub libnccl cannot be built");
  }

  @Test
  void aWorldOfOneThroughTheLoadersSearchPath() throws Exception {
    Path dir = stub("found", false);
    TestSeed seed = TestSeed.fresh();
    String out = child(Map.of("LD_LIBRARY_PATH", dir.toString()), List.of(), "world", dir.resolve(NcclNative.SONAME).toString(),
        Long.toString(seed.value()));
    assertTrue(out.contains("nccl-stub: ok"), seed + ":\n" + out);
    assertTrue(out.contains("NCCL available: version 22804 (libnccl.so.2 opened by libmoeyard_cuda.so: " + dir), out);
  }

  @Test
  void aLibraryWithoutAFunctionIsNamed() throws Exception {
    Path file = stub("norecv", true).resolve(NcclNative.SONAME);
    String out = message(child(Map.of(), List.of("-D" + NcclNative.PROPERTY + "=" + file), "probe"));
    assertTrue(out.startsWith(NcclAvailability.UNAVAILABLE + file + " lacks ncclRecv (dlsym: "), out);
    assertTrue(out.contains("undefined symbol: ncclRecv"), out);
    assertTrue(out.contains(" (-D" + NcclNative.PROPERTY + "=" + file + "); and NCCL's Java bindings"), out);
  }

  @Test
  void aMissingFileIsNamed() throws Exception {
    Path file = tmp.resolve("none").resolve(NcclNative.SONAME);
    String out = message(child(Map.of(), List.of("-D" + NcclNative.PROPERTY + "=" + file), "probe"));
    assertTrue(out.startsWith(NcclAvailability.UNAVAILABLE + "dlopen(\"" + file + "\") failed: " + file
        + ": cannot open shared object file: No such file or directory (-D" + NcclNative.PROPERTY + "=" + file + "); and "), out);
  }

  /** gcc -shared of nccl_stub.c into {@code tmp/name/libnccl.so.2}, without ncclRecv if asked. */
  private Path stub(String name, boolean withoutRecv) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve(name));
    Path src = dir.resolve("nccl_stub.c");
    try (InputStream in = NcclStubTest.class.getResourceAsStream("/nccl-stub/nccl_stub.c")) {
      Files.copy(in, src);
    }
    List<String> cmd = new ArrayList<>(List.of("gcc", "-std=c11", "-O1", "-Wall", "-Werror", "-shared", "-fPIC",
        "-Wl,-soname," + NcclNative.SONAME, "-o", dir.resolve(NcclNative.SONAME).toString(), src.toString()));
    if (withoutRecv) cmd.add(1, "-DSTUB_WITHOUT_RECV");
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "gcc hung");
    assertEquals(0, p.exitValue(), String.join(" ", cmd) + "\n" + out);
    return dir;
  }

  /** Runs NcclStubMain in a fresh JVM on this test's class path; its output (exit 0 asserted). */
  private String child(Map<String, String> env, List<String> props, String... args) throws Exception {
    String java = ProcessHandle.current().info().command().orElse("java");
    List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED",
        "-cp", System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"))));
    String lib = System.getProperty(NativeLibrary.PROPERTY);
    if (lib != null) cmd.add("-D" + NativeLibrary.PROPERTY + "=" + lib);
    cmd.addAll(props);
    cmd.add(NcclStubMain.class.getName());
    cmd.addAll(List.of(args));
    Path log = Files.createTempFile(tmp, "child-", ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().remove("LD_LIBRARY_PATH");
    pb.environment().putAll(env);
    Process p = pb.start();
    boolean done = p.waitFor(60, TimeUnit.SECONDS);
    if (!done) p.destroyForcibly().waitFor();
    String out = Files.readString(log);
    if (!done) throw new AssertionError("the child JVM hung:\n" + out);
    System.out.println("NcclStubTest " + String.join(" ", args) + ": " + out.strip());
    assertEquals(0, p.exitValue(), "child JVM " + cmd + ":\n" + out);
    return out;
  }

  /** The line of {@code out} that starts with "NCCL " (the probe's message). */
  private static String message(String out) {
    return out.lines().filter(l -> l.startsWith("NCCL ")).findFirst().orElseThrow(() -> new AssertionError("no NCCL message in:\n" + out));
  }

  private static boolean onPath(String tool) {
    for (String d : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
      if (!d.isEmpty() && Files.isExecutable(Path.of(d, tool))) return true;
    }
    return false;
  }
}
