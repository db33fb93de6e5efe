package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code moeyard launch} end to end: the launcher is a child JVM on this test's class path (as
 * ./moeyard would start it), its ranks are grandchildren. The ranks print their pids, so the test
 * can check that none outlives the launcher.
 */
class LaunchCommandTest {
  private record Result(int exit, String output, long millis) {}

  private static List<String> launcherCommand(String... args) {
    String javaExe = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    List<String> cmd = new ArrayList<>(List.of(javaExe));
    cmd.addAll(RankProcesses.JVM_OPTIONS);
    cmd.addAll(List.of("-cp", cp, Moeyard.class.getName(), "launch"));
    cmd.addAll(List.of(args));
    return cmd;
  }

  private static Result launch(String... args) throws IOException, InterruptedException {
    long t0 = System.nanoTime();
    return finish(start(args), t0);
  }

  private static List<Long> rankPids(String output) {
    List<Long> pids = new ArrayList<>();
    Matcher m = Pattern.compile("(?m)^\\[rank \\d+\\] pid (\\d+)$").matcher(output);
    while (m.find()) pids.add(Long.parseLong(m.group(1)));
    return pids;
  }

  private static void assertAllGone(List<Long> pids, String output) throws InterruptedException {
    for (long pid : pids) {
      var h = ProcessHandle.of(pid);
      if (h.isPresent()) h.get().onExit().completeOnTimeout(null, 2, TimeUnit.SECONDS).join();
      assertFalse(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "rank pid " + pid + " outlived the launcher:\n" + output);
    }
  }

  @Test
  void twoAndThreeRanksMeetAndExchangeBlobs() throws Exception {
    for (int n : new int[] {2, 3}) {
      Result r = launch("--nprocs", Integer.toString(n), "--", "rendezvous-check", "--config", "hidden=7168");
      assertEquals(0, r.exit(), r.output());
      for (int rank = 0; rank < n; rank++) {
        assertTrue(r.output().contains("[rank " + rank + "] rendezvous ok: rank " + rank + " of " + n + ", node 0 of 1"), r.output());
      }
      assertEquals(n, rankPids(r.output()).size(), r.output());
      assertAllGone(rankPids(r.output()), r.output());
    }
  }

  @Test
  void simulatedNodesSplitTheRanks() throws Exception {
    Result r = launch("--nprocs", "4", "--nodes", "2", "--", "rendezvous-check");
    assertEquals(0, r.exit(), r.output());
    assertTrue(r.output().contains("[rank 3] rendezvous ok: rank 3 of 4, node 1 of 2, local rank 1"), r.output());
  }

  @Test
  void aFailingRankStopsTheOthersAndLeavesNoProcessBehind() throws Exception {
    // Rank 1 dies after the join while the others wait for it in an all-gather; they must be
    // stopped (by the launcher, or by the store noticing the dropped connection) long before
    // their 30 s timeout. Which of the two comes first is a race, so both outcomes pass.
    Result r = launch("--nprocs", "3", "--", "rendezvous-check", "--fail-rank", "1", "--timeout-ms", "30000");
    assertTrue(r.exit() == 3 || r.exit() == 2, "exit " + r.exit() + ":\n" + r.output());
    assertTrue(r.output().contains("rank 1 exited with code 3") || r.output().contains("rank 1 left the world"), r.output());
    assertTrue(r.millis() < 20_000, "took " + r.millis() + " ms:\n" + r.output());
    assertEquals(3, rankPids(r.output()).size(), r.output());
    assertAllGone(rankPids(r.output()), r.output());
  }

  @ParameterizedTest
  @ValueSource(booleans = {false, true})
  void aStoppedOrKilledLauncherTakesItsRanksWithIt(boolean kill9) throws Exception {
    // SIGTERM runs the launcher's shutdown hook; kill -9 runs nothing, and the ranks must notice
    // on their own that their launcher is gone.
    Process p = new ProcessBuilder(launcherCommand("--nprocs", "2", "--", "rendezvous-check", "--hold-ms", "60000"))
        .redirectErrorStream(true).start();
    List<Long> pids = new ArrayList<>();
    StringBuilder seen = new StringBuilder();
    try (var r = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      int ok = 0;
      for (String line; ok < 2 && (line = r.readLine()) != null; ) {
        seen.append(line).append('\n');
        Matcher m = Pattern.compile("^\\[rank \\d+\\] pid (\\d+)$").matcher(line);
        if (m.find()) pids.add(Long.parseLong(m.group(1)));
        if (line.contains("rendezvous ok")) ok++;
      }
      assertEquals(2, pids.size(), seen.toString());
      if (kill9) p.destroyForcibly();
      else p.destroy();
      assertTrue(p.waitFor(20, TimeUnit.SECONDS), "the launcher did not exit");
    } finally {
      p.destroyForcibly();
    }
    for (long pid : pids) {
      var h = ProcessHandle.of(pid);
      if (h.isPresent()) h.get().onExit().completeOnTimeout(null, 10, TimeUnit.SECONDS).join();
      boolean alive = ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
      if (alive) ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
      assertFalse(alive, "rank pid " + pid + " outlived its launcher (kill -9: " + kill9 + ")");
    }
  }

  /** Starts a launcher without waiting for it; {@link #finish} collects it. */
  private static Process start(String... args) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(launcherCommand(args)).redirectErrorStream(true);
    pb.environment().remove("MOEYARD_JVM_OPTS");
    return pb.start();
  }

  private static Result finish(Process p, long t0) throws IOException, InterruptedException {
    byte[] out;
    try (var in = p.getInputStream()) {
      out = in.readAllBytes();
    }
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("launch hung:\n" + new String(out, StandardCharsets.UTF_8));
    }
    return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8), (System.nanoTime() - t0) / 1_000_000);
  }

  private static int freePort() throws IOException {
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** Two launches, as two machines would run them, make one world: machine 1's ranks come after machine 0's. */
  @Test
  void twoMachinesLaunchOneWorld() throws Exception {
    String port = Integer.toString(freePort());
    long t0 = System.nanoTime();
    Process m1 = start("--nprocs", "2", "--machines", "2", "--machine-rank", "1", "--master-addr", "127.0.0.1",
        "--master-port", port, "--", "rendezvous-check", "--config", "hidden=7168");
    Process m0 = start("--nprocs", "2", "--machines", "2", "--machine-rank", "0", "--master-addr", "127.0.0.1",
        "--master-port", port, "--", "rendezvous-check", "--config", "hidden=7168");
    Result r0 = finish(m0, t0);
    Result r1 = finish(m1, t0);
    assertEquals(0, r0.exit(), r0.output() + "\n--- machine 1:\n" + r1.output());
    assertEquals(0, r1.exit(), r1.output());
    assertTrue(r0.output().contains("[rank 1] rendezvous ok: rank 1 of 4, node 0 of 2, local rank 1"), r0.output());
    assertTrue(r1.output().contains("[rank 2] rendezvous ok: rank 2 of 4, node 1 of 2, local rank 0"), r1.output());
    assertTrue(r1.output().contains("[rank 3] rendezvous ok: rank 3 of 4, node 1 of 2, local rank 1"), r1.output());
    assertFalse(r0.output().contains("[rank 2]") || r1.output().contains("[rank 0]"), "each launch runs its own ranks");
    assertAllGone(rankPids(r0.output() + r1.output()), r0.output() + r1.output());
  }

  /**
   * The cluster check on two launches of two ranks, as two machines: each rank names its machine
   * and leader, times its meetings and checks its links. Machine 1 is named by its launch
   * ({@code launch --machine-name}), machine 0 by the check's own option.
   */
  @Test
  void theClusterCheckSeesTwoMachines() throws Exception {
    String port = Integer.toString(freePort());
    long t0 = System.nanoTime();
    Process[] m = new Process[2];
    m[1] = start("--nprocs", "2", "--machines", "2", "--machine-rank", "1", "--master-addr", "127.0.0.1", "--master-port", port,
        "--machine-name", "pretend-1", "--", "rendezvous-check", "--cluster", "--meetings", "20");
    m[0] = start("--nprocs", "2", "--machines", "2", "--machine-rank", "0", "--master-addr", "127.0.0.1", "--master-port", port,
        "--", "rendezvous-check", "--cluster", "--machine-name", "pretend-0", "--meetings", "20");
    Result r0 = finish(m[0], t0);
    Result r1 = finish(m[1], t0);
    assertEquals(0, r0.exit(), r0.output() + "\n--- machine 1:\n" + r1.output());
    assertEquals(0, r1.exit(), r1.output());
    String all = r0.output() + r1.output();
    for (int r = 0; r < 4; r++) {
      String want = "[rank " + r + "] cluster ok: rank " + r + " on machine " + r / 2 + " of 2 ('pretend-" + r / 2 + "', leader rank "
          + r / 2 * 2 + "); median of 20: allGather ";
      assertTrue(all.contains(want), "no '" + want + "' in:\n" + all);
      String links = "[rank " + r + "] links ok: rank " + r + " sent 3 peer(s) 1048576 bytes each, received as much; median of 20 rounds ";
      assertTrue(all.contains(links), "no '" + links + "' in:\n" + all);
    }
  }

  /**
   * The integration example as engines run it: two launches as two machines (named by
   * {@code launch --machine-name}), one rank process per rank, each rank's layer output within
   * bf16 rounding of the dense layer; the same numbers as the example's rank threads.
   */
  @Test
  void theLayerExampleRunsAcrossTwoMachines() throws Exception {
    String port = Integer.toString(freePort());
    long t0 = System.nanoTime();
    Process[] m = new Process[2];
    for (int i = 1; i >= 0; i--) {
      m[i] = start("--nprocs", "2", "--machines", "2", "--machine-rank", Integer.toString(i), "--master-addr", "127.0.0.1",
          "--master-port", port, "--machine-name", "pretend-" + i, "--", "layer-example", "--hidden", "32");
    }
    Result r0 = finish(m[0], t0);
    Result r1 = finish(m[1], t0);
    String all = r0.output() + "\n--- machine 1:\n" + r1.output();
    assertEquals(0, r0.exit(), all);
    assertEquals(0, r1.exit(), all);
    var threads = new java.io.ByteArrayOutputStream();
    var saved = System.out;
    System.setOut(new java.io.PrintStream(threads, true, StandardCharsets.UTF_8));
    try {
      assertEquals(0, Moeyard.commandLine().execute("layer-example", "--hidden", "32"));
    } finally {
      System.setOut(saved);
    }
    String inJvm = threads.toString(StandardCharsets.UTF_8);
    for (int r = 0; r < 4; r++) {
      Matcher proc = Pattern.compile("\\[rank " + r + "\\] layer-example: rank " + r + " \\(4 rank processes, machine " + r / 2
          + " of 2, node " + r / 2 + " of 2\\), (\\d+ tokens: max abs difference vs the dense layer \\S+): ok").matcher(all);
      assertTrue(proc.find(), "rank " + r + ":\n" + all);
      assertTrue(inJvm.contains("layer-example: rank " + r + " (4 rank threads), " + proc.group(1) + ": ok"),
          "rank " + r + " as a process and as a thread differ:\n" + all + "\n--- threads:\n" + inJvm);
    }
    assertEquals(2, Moeyard.commandLine().execute("layer-example", "--ranks", "3", "--experts", "16"));
  }

  /** A rank failing on one machine fails the other machine's launch too (through the store), well before the timeout. */
  @Test
  void aFailingRankOnOneMachineFailsBothLaunches() throws Exception {
    String port = Integer.toString(freePort());
    long t0 = System.nanoTime();
    Process m0 = start("--nprocs", "2", "--machines", "2", "--machine-rank", "0", "--master-addr", "127.0.0.1",
        "--master-port", port, "--", "rendezvous-check", "--fail-rank", "3", "--timeout-ms", "30000");
    Process m1 = start("--nprocs", "2", "--machines", "2", "--machine-rank", "1", "--master-addr", "127.0.0.1",
        "--master-port", port, "--", "rendezvous-check", "--fail-rank", "3", "--timeout-ms", "30000");
    Result r1 = finish(m1, t0);
    Result r0 = finish(m0, t0);
    assertNotEquals(0, r1.exit(), r1.output());
    assertNotEquals(0, r0.exit(), r0.output());
    assertTrue(r0.output().contains("rank 3"), "machine 0 names the failed rank:\n" + r0.output());
    assertTrue(Math.max(r0.millis(), r1.millis()) < 20_000, "took " + r0.millis() + " ms:\n" + r0.output());
    assertAllGone(rankPids(r0.output() + r1.output()), r0.output() + r1.output());
  }

  @Test
  void badLaunchOptionsExitWith2() {
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "2", "--machines", "2", "--master-addr", "h",
        "--master-port", "29500", "--machine-rank", "2", "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "2", "--machines", "2", "--master-addr", "h",
        "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "2", "--machines", "2", "--master-port", "29500",
        "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "2", "--machines", "0", "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "3", "--nodes", "2", "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "0", "--", "rendezvous-check"));
    assertEquals(2, Moeyard.commandLine().execute("launch", "--nprocs", "2", "--master-port", "70000", "--", "rendezvous-check"));
    assertNotEquals(0, Moeyard.commandLine().execute("launch", "--nprocs", "2"));
  }

  @Test
  void aRendezvousCheckOutsideALaunchExitsWith2() {
    // No RANK in this JVM's environment: one clear error, not a hang.
    assertEquals(2, Moeyard.commandLine().execute("rendezvous-check"));
  }
}
