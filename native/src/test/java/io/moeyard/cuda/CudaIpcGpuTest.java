package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.testkit.TestSeed;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * CUDA IPC between processes on one GPU: child JVMs on this test's class path, one per rank, with
 * the torchrun variables set ({@link CudaIpcRankMain}); each writes into every other's buffer
 * (a copy and a kernel's store) and checks its own. Skipped where CUDA IPC is unavailable (here:
 * no driver). Tagged {@code gpu-step}: on the GPU machine it runs as a step of its own in
 * bench/gpu/run.sh ({@code GpuTestMain --class}), not inside the package run.
 */
@Tag(GpuTestMain.OWN_STEP)
class CudaIpcGpuTest {

  @BeforeEach
  void ipc() {
    NativeTestSupport.requireGpu();
    CudaIpc.Availability a = CudaIpc.availability();
    Assumptions.assumeTrue(a.available(), a::message);
  }

  @ParameterizedTest(name = "{0} processes")
  @ValueSource(ints = {2, 3})
  void processesWriteIntoEachOthersBuffers(int n) throws Exception {
    long seed = TestSeed.fresh().value();
    // chunks of 1 MiB + 48 bytes: the copies start at offsets that are not multiples of 16
    List<Rank> ranks = start(n, CudaIpcRankMain.class.getName(), Long.toString(seed), Integer.toString(1 << 20 | 48));
    String all = finish(ranks, 90);
    for (int r = 0; r < n; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
      assertTrue(ranks.get(r).text().contains("cuda-ipc rank " + r + ": ok"), all);
    }
  }

  record Rank(Process process, ByteArrayOutputStream output, Thread pump) {
    String text() {
      synchronized (output) {
        return output.toString(StandardCharsets.UTF_8);
      }
    }
  }

  /** {@code n} child JVMs running {@code args} (JVM options, main class, its arguments), ranks 0..n-1 of one node. */
  static List<Rank> start(int n, String... args) throws IOException {
    return start(n, n, args);
  }

  /** As {@link #start(int, String...)}, the ranks simulating nodes of {@code perNode} ranks each. */
  static List<Rank> start(int n, int perNode, String... args) throws IOException {
    return start(n, perNode, Map.of(), args);
  }

  /** As {@link #start(int, int, String...)}, with {@code env} added to every rank's environment. */
  static List<Rank> start(int n, int perNode, Map<String, String> env, String... args) throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    String java = ProcessHandle.current().info().command().orElse("java");
    List<Rank> ranks = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      List<String> cmd = new ArrayList<>(List.of(java, "-XX:TieredStopAtLevel=1", "--enable-native-access=ALL-UNNAMED",
          "-cp", System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"))));
      String lib = System.getProperty("moeyard.native.lib");
      if (lib != null) cmd.add("-Dmoeyard.native.lib=" + lib);
      cmd.addAll(List.of(args));
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
      pb.environment().putAll(RankEnv.variables(r, n, perNode, "127.0.0.1", port));
      pb.environment().putAll(env);
      Process p = pb.start();
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      Thread pump = Thread.ofPlatform().daemon().start(() -> copy(p.getInputStream(), out));
      ranks.add(new Rank(p, out, pump));
    }
    return ranks;
  }

  /** Waits for every rank (killing all when one outlives {@code seconds}); returns their outputs. */
  static String finish(List<Rank> ranks, int seconds) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    for (Rank r : ranks) {
      if (!r.process().waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
        for (Rank k : ranks) k.process().destroyForcibly();
        throw new AssertionError("a rank outlived " + seconds + " s:\n" + outputs(ranks));
      }
      r.pump().join(5_000);
    }
    return outputs(ranks);
  }

  private static String outputs(List<Rank> ranks) {
    StringBuilder sb = new StringBuilder();
    for (int r = 0; r < ranks.size(); r++) sb.append("--- rank ").append(r).append(":\n").append(ranks.get(r).text());
    return sb.toString();
  }

  private static void copy(InputStream in, ByteArrayOutputStream out) {
    byte[] buf = new byte[4096];
    try (in) {
      for (int k; (k = in.read(buf)) > 0; ) {
        synchronized (out) {
          out.write(buf, 0, k);
        }
      }
    } catch (IOException ignored) {
      // the process is gone
    }
  }
}
