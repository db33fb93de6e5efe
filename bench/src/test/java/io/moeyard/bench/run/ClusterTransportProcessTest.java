package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.shm.ShmFiles;
import io.moeyard.engine.shm.ShmTransport;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Ranks as processes of {@link io.moeyard.engine.shm.ClusterTransport} on two pretend machines
 * (ranks 0 and 2 on one, 1 and 3 on the other): child JVMs ({@link ClusterRankMain}) whose files
 * carry this JVM's pid as their owner, so the test can check that none is left behind.
 */
class ClusterTransportProcessTest {
  private static final int[] MACHINES = {0, 1, 0, 1};

  private record Rank(Process process, ByteArrayOutputStream output) {
    String text() {
      synchronized (output) {
        return output.toString(StandardCharsets.UTF_8);
      }
    }
  }

  private static List<Rank> start() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    String javaExe = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    int n = MACHINES.length;
    List<Rank> ranks = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      ProcessBuilder pb = new ProcessBuilder(javaExe, "-XX:TieredStopAtLevel=1", "-Xss1m", "--enable-native-access=ALL-UNNAMED",
          "-cp", cp, ClusterRankMain.class.getName(), Integer.toString(MACHINES[r])).redirectErrorStream(true);
      pb.environment().putAll(RankEnv.variables(r, n, n, "127.0.0.1", port));
      pb.environment().put(ShmTransport.OWNER_PID_ENV, Long.toString(ProcessHandle.current().pid()));
      Process p = pb.start();
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      Thread.ofPlatform().daemon().start(() -> copy(p.getInputStream(), out));
      ranks.add(new Rank(p, out));
    }
    return ranks;
  }

  private static void copy(InputStream in, ByteArrayOutputStream out) {
    byte[] buf = new byte[4096];
    try (in) {
      for (int n; (n = in.read(buf)) > 0; ) {
        synchronized (out) {
          out.write(buf, 0, n);
        }
      }
    } catch (IOException ignored) {
      // the process is gone
    }
  }

  private static String outputs(List<Rank> ranks) {
    StringBuilder sb = new StringBuilder();
    for (int r = 0; r < ranks.size(); r++) sb.append("--- rank ").append(r).append(":\n").append(ranks.get(r).text());
    return sb.toString();
  }

  /**
   * kill -9 of one rank while all loop: a non-leader (3) or a leader (1) of machine 1, or rank 0
   * (machine 0's leader, and the store's host: the other machine hears of it from the store's end).
   * The others, on both machines, fail well within the 10 s timeout naming it, and no file is
   * left behind.
   */
  @ParameterizedTest
  @ValueSource(ints = {3, 1, 0})
  void aKilledRankIsNamedOnEveryMachineQuickly(int victim) throws Exception {
    List<Rank> ranks = start();
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      for (Rank r : ranks) {
        while (!r.text().contains("looping")) {
          assertTrue(r.process().isAlive(), "a rank exited before the kill:\n" + outputs(ranks));
          assertTrue(System.nanoTime() < deadline, "ranks never started looping:\n" + outputs(ranks));
          Thread.sleep(20);
        }
      }
      long killedAt = System.nanoTime();
      ranks.get(victim).process().destroyForcibly(); // SIGKILL
      for (int r = 0; r < ranks.size(); r++) {
        if (r == victim) continue;
        assertTrue(ranks.get(r).process().waitFor(8, TimeUnit.SECONDS), "rank " + r + " still running 8 s after the kill:\n"
            + outputs(ranks));
      }
      long millis = (System.nanoTime() - killedAt) / 1_000_000;
      ranks.get(victim).process().waitFor(10, TimeUnit.SECONDS);
      String all = outputs(ranks);
      for (int r = 0; r < ranks.size(); r++) {
        if (r == victim) continue;
        assertNotEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " exited 0:\n" + all);
        String text = ranks.get(r).text();
        assertTrue(text.contains("collective failed: CollectiveTimeoutException") && text.contains("rank " + victim),
            "rank " + r + " did not name rank " + victim + ":\n" + all);
      }
      assertTrue(millis < 5_000, "the survivors took " + millis + " ms to fail:\n" + all);
      List<?> left = ShmFiles.list(ProcessHandle.current().pid());
      assertTrue(left.isEmpty(), "shared-memory files left behind: " + left + "\n" + all);
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
      for (Rank r : ranks) r.process().waitFor(10, TimeUnit.SECONDS);
    }
  }
}
