package io.moeyard.bench.run;

import static io.moeyard.bench.run.ChildRanks.outputs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.bench.cli.Moeyard;
import io.moeyard.bench.run.ChildRanks.Rank;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.shm.ShmFiles;
import io.moeyard.engine.shm.ShmTransport;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Ranks as processes over shared memory ({@link ShmTransport}), end to end: child JVMs on this
 * test's class path, one per rank, with the torchrun variables set ({@link ShmRankMain}). Their
 * shared-memory files carry this JVM's pid as the job owner, so the test can check that none is
 * left behind.
 */
class ShmTransportProcessTest {
  private static final long SEED = TestSeed.fresh().value();

  private static List<Rank> start(int nprocs, int nodes, String... args) throws IOException {
    return ChildRanks.start(ShmRankMain.class, nprocs, nprocs / nodes, r -> List.of(args));
  }

  private static void finish(List<Rank> ranks) throws InterruptedException {
    for (Rank r : ranks) {
      if (!r.process().waitFor(120, TimeUnit.SECONDS)) {
        for (Rank k : ranks) k.process().destroyForcibly();
        throw new AssertionError("a rank hung (seed " + SEED + "):\n" + outputs(ranks));
      }
      r.pump().join(5_000);
    }
  }

  private static void assertNoFilesLeft(String context) {
    List<?> left = ShmFiles.list(ProcessHandle.current().pid());
    assertTrue(left.isEmpty(), "shared-memory files left behind: " + left + "\n" + context);
  }

  /**
   * Every output of every rank (received rows, FP8 scales, weights, slot counts, pair tables,
   * layout flags, combine outputs) is bit-identical to the in-JVM run of the same random case.
   */
  @ParameterizedTest(name = "{0} processes on {1} node(s)")
  @CsvSource({"2, 1", "3, 1", "4, 2"})
  void processesGiveTheInJvmBits(int nprocs, int nodes) throws Exception {
    int cases = 5; // every edge-case kind of ShmRankMain.randomCase once
    List<Rank> ranks = start(nprocs, nodes, "compare", Long.toString(SEED + nprocs), Integer.toString(cases));
    finish(ranks);
    String all = outputs(ranks);
    for (int r = 0; r < nprocs; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + (SEED + nprocs) + "):\n" + all);
      assertTrue(ranks.get(r).text().contains("case " + (cases - 1) + " ok"), "rank " + r + " did not finish:\n" + all);
    }
    assertNoFilesLeft(all);
  }

  /**
   * kill -9 of one rank mid-run: the others fail within well under the 10 s timeout with an
   * error naming it, exit non-zero, and leave no process and no shared-memory file behind.
   */
  @Test
  void aKilledRankIsNamedByTheOthersQuickly() throws Exception {
    int nprocs = 3;
    List<Rank> ranks = start(nprocs, 1, "loop");
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      for (Rank r : ranks) {
        while (!r.text().contains("looping")) {
          assertTrue(r.process().isAlive(), "a rank exited before the kill:\n" + outputs(ranks));
          assertTrue(System.nanoTime() < deadline, "ranks never started looping:\n" + outputs(ranks));
          Thread.sleep(20);
        }
      }
      Process victim = ranks.get(1).process();
      long killedAt = System.nanoTime();
      victim.destroyForcibly(); // SIGKILL
      for (int r : new int[] {0, 2}) {
        Process p = ranks.get(r).process();
        assertTrue(p.waitFor(8, TimeUnit.SECONDS), "rank " + r + " still running 8 s after the kill:\n" + outputs(ranks));
      }
      long millis = (System.nanoTime() - killedAt) / 1_000_000;
      finish(ranks);
      String all = outputs(ranks);
      for (int r : new int[] {0, 2}) {
        assertNotEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " exited 0:\n" + all);
        String text = ranks.get(r).text();
        assertTrue(text.contains("collective failed") && text.contains("rank 1"), "rank " + r + " did not name rank 1:\n" + all);
      }
      assertTrue(millis < 5_000, "the survivors took " + millis + " ms to fail:\n" + all);
      for (Rank r : ranks) assertTrue(!r.process().isAlive(), "a rank is still alive:\n" + all);
      assertNoFilesLeft(all);
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
    }
  }

  /** A rank that never arrives: the others fail at the timeout with a CollectiveTimeoutException naming it. */
  @Test
  void aMissingRankIsNamedAtTheTimeout() throws Exception {
    List<Rank> ranks = start(3, 1, "stall", "1500");
    try {
      for (int r : new int[] {0, 2}) {
        assertTrue(ranks.get(r).process().waitFor(30, TimeUnit.SECONDS), "rank " + r + " did not time out:\n" + outputs(ranks));
      }
      String all = outputs(ranks);
      for (int r : new int[] {0, 2}) {
        assertEquals(3, ranks.get(r).process().exitValue(), all);
        String text = ranks.get(r).text();
        assertTrue(text.contains("CollectiveTimeoutException") && text.contains("rank(s) [1] did not reach the collective")
            || text.contains("world aborted by rank") && text.contains("[1]"), "rank " + r + " did not name rank 1:\n" + all);
      }
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
      for (Rank r : ranks) r.process().waitFor(10, TimeUnit.SECONDS);
    }
    assertNoFilesLeft(outputs(ranks));
  }

  /** Waits (bounded) until every listed rank printed {@code line}. */
  private static void awaitLine(List<Rank> ranks, List<Integer> which, String line) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    for (int r : which) {
      while (!ranks.get(r).text().contains(line)) {
        assertTrue(ranks.get(r).process().isAlive(), "rank " + r + " exited before printing '" + line + "':\n" + outputs(ranks));
        assertTrue(System.nanoTime() < deadline, "rank " + r + " never printed '" + line + "':\n" + outputs(ranks));
        Thread.sleep(10);
      }
    }
  }

  /**
   * kill -9 of rank 0 (the store's owner) while rank 1 is in no collective: rank 1's checkPeers,
   * polled, finds it gone within a couple of seconds, naming it, and its next collective fails
   * too. Two checks can tell, whichever sees it first: rank 0's process is gone, or the store's
   * connection has ended.
   */
  @Test
  void checkPeersFindsAKilledPeerOutsideAnyCollective() throws Exception {
    List<Rank> ranks = start(2, 1, "watch", "0", "kill");
    try {
      awaitLine(ranks, List.of(0), "victim waiting");
      awaitLine(ranks, List.of(1), "watching");
      long killedAt = System.nanoTime();
      ranks.get(0).process().destroyForcibly(); // SIGKILL
      Rank watcher = ranks.get(1);
      while (!watcher.text().contains("checkPeers threw") && System.nanoTime() - killedAt < TimeUnit.SECONDS.toNanos(10)) {
        Thread.sleep(5);
      }
      long millis = (System.nanoTime() - killedAt) / 1_000_000;
      assertTrue(watcher.process().waitFor(10, TimeUnit.SECONDS), "rank 1 still running after the kill:\n" + outputs(ranks));
      finish(ranks);
      String all = outputs(ranks);
      String text = watcher.text();
      boolean byProcess = text.contains("checkPeers threw CollectiveTimeoutException [0]: rank 0 (pid "
          + ranks.get(0).process().pid() + ") died: its process is gone");
      boolean byStore = text.contains("checkPeers threw CollectiveTimeoutException [0]: rank 1 lost ")
          && text.contains("rank 0 is gone");
      assertTrue(byProcess || byStore, "rank 1's checkPeers did not name rank 0:\n" + all);
      assertTrue(text.contains("next collective threw CollectiveException") && (text.contains("rank 0 (pid") || text.contains("rank 0 is gone")),
          "rank 1's next collective did not fail naming rank 0:\n" + all);
      assertEquals(3, watcher.process().exitValue(), all);
      // no collective runs, so nothing but checkPeers could have told; the bound is loose for busy machines
      assertTrue(millis < 3_000, "rank 1 took " + millis + " ms to find rank 0 gone:\n" + all);
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
      for (Rank r : ranks) r.process().waitFor(10, TimeUnit.SECONDS);
    }
    assertNoFilesLeft(outputs(ranks));
  }

  /** A peer aborts while the other is in no collective: its checkPeers throws the abort, and so does its next collective. */
  @Test
  void checkPeersThrowsAPeersAbort() throws Exception {
    List<Rank> ranks = start(2, 1, "watch", "1", "abort");
    try {
      Rank watcher = ranks.get(0);
      assertTrue(watcher.process().waitFor(20, TimeUnit.SECONDS), "rank 0 did not see the abort:\n" + outputs(ranks));
      String all = outputs(ranks);
      String text = watcher.text();
      String abort = "world aborted by rank 1: rank 1 aborted: java.lang.IllegalStateException: rank 1 gives up";
      assertTrue(text.contains("checkPeers threw CollectiveException: " + abort), "rank 0's checkPeers:\n" + all);
      assertTrue(text.contains("next collective threw CollectiveException: " + abort), "rank 0's next collective:\n" + all);
      assertEquals(3, watcher.process().exitValue(), all);
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
      for (Rank r : ranks) r.process().waitFor(10, TimeUnit.SECONDS);
    }
    assertNoFilesLeft(outputs(ranks));
  }

  /** The multi-process bench end to end: same table as in-JVM, verified, and no file left. */
  @Test
  void benchWithProcesses() throws Exception {
    String javaExe = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    List<String> cmd = new ArrayList<>(List.of(javaExe, "--enable-native-access=ALL-UNNAMED", "-cp", cp,
        Moeyard.class.getName(), "bench", "--procs", "2", "--nodes", "2", "--tokens", "64", "--hidden", "128",
        "--experts", "8", "--topk", "2", "--iters", "2", "--warmup", "0", "--seed", Long.toString(SEED)));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), out);
    assertEquals(0, p.exitValue(), out);
    assertTrue(out.contains("\nverified: yes"), out);
    assertTrue(out.contains("dispatch fused") && out.contains("2 rank processes over shared memory"), out);
    assertTrue(out.contains("node path: relay") && out.contains("crossing nodes") && out.contains("(2 nodes, fused dispatch, relay)"), out);
    assertTrue(ShmFiles.list(p.pid()).isEmpty(), "files of the bench's job left: " + ShmFiles.list(p.pid()));
  }
}
