package io.moeyard.bench.run;

import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.shm.ShmTransport;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

/**
 * Rank processes for the process tests: child JVMs on this test's class path, one per rank, with
 * the torchrun variables set and this JVM's pid as the owner of their shared-memory files (so a
 * test can check that none is left behind), their output collected.
 */
final class ChildRanks {
  private ChildRanks() {}

  /** One rank's process and everything it printed so far (stdout and stderr). */
  record Rank(Process process, ByteArrayOutputStream output, Thread pump) {
    String text() {
      synchronized (output) {
        return output.toString(StandardCharsets.UTF_8);
      }
    }
  }

  /** {@code nprocs} ranks of {@code main}, nodes of {@code localWorldSize}, rank r with arguments {@code argsOf(r)}. */
  static List<Rank> start(Class<?> main, int nprocs, int localWorldSize, IntFunction<List<String>> argsOf) throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    String javaExe = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    List<Rank> ranks = new ArrayList<>();
    for (int r = 0; r < nprocs; r++) {
      List<String> cmd = new ArrayList<>(List.of(javaExe, "-XX:TieredStopAtLevel=1", "-Xss1m",
          "--enable-native-access=ALL-UNNAMED", "-cp", cp, main.getName()));
      cmd.addAll(argsOf.apply(r));
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
      pb.environment().putAll(RankEnv.variables(r, nprocs, localWorldSize, "127.0.0.1", port));
      pb.environment().put(ShmTransport.OWNER_PID_ENV, Long.toString(ProcessHandle.current().pid()));
      Process p = pb.start();
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      Thread pump = Thread.ofPlatform().daemon().start(() -> copy(p.getInputStream(), out));
      ranks.add(new Rank(p, out, pump));
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

  /** Every rank's output so far, rank by rank, for failure messages. */
  static String outputs(List<Rank> ranks) {
    StringBuilder sb = new StringBuilder();
    for (int r = 0; r < ranks.size(); r++) sb.append("--- rank ").append(r).append(":\n").append(ranks.get(r).text());
    return sb.toString();
  }
}
