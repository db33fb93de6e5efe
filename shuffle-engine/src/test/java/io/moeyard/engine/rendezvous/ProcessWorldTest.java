package io.moeyard.engine.rendezvous;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Ranks as threads of this JVM, each joining over loopback TCP as a separate process would. */
@Timeout(30)
class ProcessWorldTest {
  private static final Duration SHORT = Duration.ofMillis(800);
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void stop() {
    pool.shutdownNow();
  }

  static int freePort() {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static RankEnv env(int rank, int size, int local, int port) {
    return new RankEnv(rank, size, rank % local, local, "127.0.0.1", port);
  }

  /** Runs {@code body} for each listed rank on its own thread; returns results or the thrown error by rank. */
  private List<Object> ranks(List<Integer> which, IntFunction<Object> body) throws InterruptedException {
    List<Future<Object>> fs = new ArrayList<>();
    for (int r : which) fs.add(pool.submit(() -> body.apply(r)));
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : fs) {
      try {
        out.add(f.get(20, TimeUnit.SECONDS));
      } catch (ExecutionException e) {
        out.add(e.getCause());
      } catch (java.util.concurrent.TimeoutException e) {
        throw new AssertionError("a rank hung", e);
      }
    }
    return out;
  }

  private static List<Integer> range(int n) {
    List<Integer> l = new ArrayList<>();
    for (int i = 0; i < n; i++) l.add(i);
    return l;
  }

  @Test
  void agreeingRanksJoinAndAllGatherBlobsInRankOrder() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(4), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 4, 2, port), Map.of("hidden", "7168", "top_k", "8"), Duration.ofSeconds(5))) {
        assertEquals(2, w.topology().nodes());
        List<String> seen = new ArrayList<>();
        for (int round = 0; round < 3; round++) {
          List<byte[]> all = w.allGather(("r" + r + "/" + round).repeat(r + 1).getBytes(StandardCharsets.UTF_8));
          for (int p = 0; p < 4; p++) {
            assertArrayEquals(("r" + p + "/" + round).repeat(p + 1).getBytes(StandardCharsets.UTF_8), all.get(p));
          }
          seen.add(new String(all.get(3), StandardCharsets.UTF_8));
        }
        w.barrier();
        return seen.size();
      }
    });
    assertEquals(List.of(3, 3, 3, 3), results);
  }

  @Test
  void disagreementNamesTheRankAndBothValues() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(3), r -> {
      Map<String, String> config = Map.of("hidden", r == 2 ? "4096" : "7168", "dtype", "bf16");
      return ProcessWorld.join(env(r, 3, 3, port), config, Duration.ofSeconds(5));
    });
    for (Object o : results) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertTrue(e.getMessage().contains("rank 2 has hidden=4096, rank 0 has hidden=7168"), e.getMessage());
      assertTrue(e.missingRanks().isEmpty());
    }
  }

  @Test
  void aMissingKeyIsADisagreementToo() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(2), r -> ProcessWorld.join(env(r, 2, 2, port),
        r == 0 ? Map.of("backend", "cpu", "experts", "64") : Map.of("backend", "cpu"), Duration.ofSeconds(5)));
    RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(1));
    assertTrue(e.getMessage().contains("rank 1 lacks experts, rank 0 has experts=64"), e.getMessage());
  }

  @Test
  void aRankThatNeverJoinsIsNamedWithinTheTimeout() throws Exception {
    int port = freePort();
    long t0 = System.nanoTime();
    List<Object> results = ranks(List.of(0, 1, 3), r -> ProcessWorld.join(env(r, 4, 4, port), Map.of(), SHORT));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    for (Object o : results) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertEquals(List.of(2), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank(s) [2] did not join"), e.getMessage());
    }
    assertTrue(ms < 5_000, "took " + ms + " ms");
  }

  @Test
  void aRankThatSkipsARoundIsNamedAndTheOthersFailFast() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(3), r -> {
      ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), SHORT);
      try {
        w.barrier();
        if (r == 1) {
          sleep(SHORT.toMillis() + 1500);
          return "skipped";
        }
        w.barrier();
        return "passed";
      } catch (RendezvousException e) {
        return e;
      } finally {
        w.close();
      }
    });
    assertEquals("skipped", results.get(1));
    for (int r : List.of(0, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r));
      assertEquals(List.of(1), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("did not reach all-gather round 2"), e.getMessage());
    }
  }

  /**
   * Three ranks join; {@code dropped} then loses its connection without a goodbye while the others
   * wait in a barrier. Returns each rank's outcome; fails unless the others fail well before the
   * 10 s timeout.
   */
  private List<Object> dropOne(int dropped) throws Exception {
    int port = freePort();
    long t0 = System.nanoTime();
    List<Object> results = ranks(range(3), r -> {
      ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), Duration.ofSeconds(10));
      if (r == dropped) {
        w.dropWithoutGoodbye();
        return "dropped";
      }
      try (w) {
        w.barrier();
        return "passed";
      } catch (RendezvousException e) {
        return e;
      }
    });
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertTrue(ms < 5_000, "a dropped connection should fail the world well before the 10 s timeout; took " + ms + " ms");
    return results;
  }

  @Test
  void aRankThatVanishesFailsTheOthersAtOnceNamingIt() throws Exception {
    List<Object> results = dropOne(2);
    for (int r : List.of(0, 1)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r));
      assertEquals(List.of(2), e.missingRanks(), e.getMessage());
    }
  }

  @Test
  void whenRankZeroAndItsStoreVanishTheOthersFailAtOnceNamingIt() throws Exception {
    List<Object> results = dropOne(0);
    for (int r : List.of(1, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r));
      assertEquals(List.of(0), e.missingRanks(), e.getMessage());
      // which the others hear first is a race: the store (still up) seeing rank 0's own connection
      // drop, or the store itself going away; both name rank 0
      assertTrue(e.getMessage().contains("rank 0 is gone") || e.getMessage().contains("rank 0 left the world"), e.getMessage());
    }
  }

  /** Polls {@code check} (every 5 ms, at most 5 s) until it throws, and returns what it threw, of {@code type}. */
  static <E extends RuntimeException> E pollUntilThrown(Class<E> type, Runnable check) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (true) {
      try {
        check.run();
      } catch (RuntimeException e) {
        return assertInstanceOf(type, e);
      }
      assertTrue(System.nanoTime() < deadline, "checkPeers never saw the failure");
      sleep(5);
    }
  }

  @Test
  void checkPeersOnAHealthyWorldReturnsAndCollectivesGoOn() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(3), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), Duration.ofSeconds(5))) {
        int rounds = 0;
        for (int round = 0; round < 6; round++) {
          for (int k = 0; k < round % 3; k++) w.checkPeers();
          List<byte[]> all = w.allGather(new byte[] {(byte) r, (byte) round});
          for (int p = 0; p < 3; p++) assertArrayEquals(new byte[] {(byte) p, (byte) round}, all.get(p));
          w.checkPeers();
          rounds++;
        }
        return rounds;
      }
    });
    assertEquals(List.of(6, 6, 6), results);
  }

  /**
   * A rank drops without goodbye after a barrier: the others, in no collective, find it with
   * checkPeers (the store pushed the failure), and their next collective and check fail alike.
   */
  @Test
  void checkPeersNamesARankThatDroppedAndTheNextCollectiveFailsAlike() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(3), r -> {
      ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), Duration.ofSeconds(10));
      w.barrier();
      if (r == 1) {
        w.dropWithoutGoodbye();
        return "dropped";
      }
      try (w) {
        RendezvousException e = pollUntilThrown(RendezvousException.class, w::checkPeers);
        RendezvousException next = assertThrows(RendezvousException.class, () -> w.allGather(new byte[1]));
        RendezvousException again = assertThrows(RendezvousException.class, w::checkPeers);
        assertEquals(e.getMessage(), next.getMessage());
        assertEquals(e.getMessage(), again.getMessage());
        assertEquals(e.missingRanks(), next.missingRanks());
        return e;
      }
    });
    assertEquals("dropped", results.get(1));
    for (int r : List.of(0, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r));
      assertEquals(List.of(1), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank 1 left the world without closing it"), e.getMessage());
    }
  }

  /** Rank 0 dies with the store in it: the others' checkPeers finds the connection's end and names rank 0. */
  @Test
  void checkPeersNamesRankZeroWhenTheStoreIsGone() throws Exception {
    int port = freePort();
    List<Object> results = ranks(range(3), r -> {
      ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), Duration.ofSeconds(10));
      w.barrier();
      w.checkPeers(); // a healthy world: nothing to read, the probe times out quietly
      if (r == 0) {
        w.dropWithoutGoodbye();
        return "dropped";
      }
      try (w) {
        RendezvousException e = pollUntilThrown(RendezvousException.class, w::checkPeers);
        assertEquals(e.getMessage(), assertThrows(RendezvousException.class, () -> w.allGather(new byte[1])).getMessage());
        return e;
      }
    });
    assertEquals("dropped", results.get(0));
    for (int r : List.of(1, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r));
      assertEquals(List.of(0), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank 0 is gone"), e.getMessage());
    }
  }

  /**
   * A rank aborts: the others' checkPeers throws the abort. A rank that only learns it at its
   * next collective (the store answers its request with the failure, behind the one it pushed)
   * fails alike, and so do its checks after that.
   */
  @Test
  void checkPeersThrowsAnAbortAndSoDoesTheNextCollective() throws Exception {
    int port = freePort();
    CountDownLatch othersDone = new CountDownLatch(2); // rank 0's store stays until they are
    List<Object> results = ranks(range(3), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 3, 3, port), Map.of(), Duration.ofSeconds(10))) {
        w.barrier();
        if (r == 2) {
          w.abort("bad shape 9");
          try {
            return assertThrows(RendezvousException.class, () -> w.allGather(new byte[0]));
          } finally {
            othersDone.countDown();
          }
        }
        RendezvousException e;
        if (r == 0) {
          e = pollUntilThrown(RendezvousException.class, w::checkPeers);
          RendezvousException next = assertThrows(RendezvousException.class, w::barrier);
          assertEquals(e.getMessage(), next.getMessage());
          try {
            assertTrue(othersDone.await(10, TimeUnit.SECONDS));
          } catch (InterruptedException x) {
            throw new AssertionError(x);
          }
        } else {
          sleep(300); // the failure is pushed and waits unread
          try {
            e = assertThrows(RendezvousException.class, w::barrier);
          } finally {
            othersDone.countDown(); // nothing below writes to the store
          }
          // its request's own answer (the failure again) is still unread behind it: it must not matter
          assertEquals(e.getMessage(), assertThrows(RendezvousException.class, w::checkPeers).getMessage());
          assertEquals(e.getMessage(), assertThrows(RendezvousException.class, w::barrier).getMessage());
        }
        return e;
      }
    });
    for (Object o : results) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertTrue(e.getMessage().contains("world aborted by rank 2: bad shape 9"), e.getMessage());
      assertTrue(e.missingRanks().isEmpty(), e.getMessage());
    }
  }

  /** Rank r's blob in step i: random bytes, some empty. */
  private static byte[] blob(long seed, int step, int rank) {
    java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed * 31 + step * 7919L + rank);
    byte[] b = new byte[rnd.nextInt(0, 200)];
    rnd.nextBytes(b);
    return b;
  }

  /**
   * Rounds of the world and of two subsets that share a rank (2), in a random order every rank
   * follows (each taking the rounds it is a member of): every round gives its members their
   * blobs in member order, whatever the other counters stand at.
   */
  @Test
  void subsetRoundsKeepTheirOwnCountersBesideTheWorldsAndEachOthers() throws Exception {
    io.moeyard.engine.testkit.TestSeed seed = io.moeyard.engine.testkit.TestSeed.fresh();
    long s = seed.value();
    int[][] subsets = {{0, 2}, {1, 2, 3}, {0, 1, 2, 3}};
    int[] plan = seed.random().ints(40, 0, subsets.length + 1).toArray(); // subsets.length: a round of the world
    int port = freePort();
    List<Object> results = ranks(range(4), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 4, 4, port), Map.of(), Duration.ofSeconds(5))) {
        seed.check(() -> {
          for (int i = 0; i < plan.length; i++) {
            if (plan[i] == subsets.length) {
              List<byte[]> all = w.allGather(blob(s, i, r));
              for (int p = 0; p < 4; p++) assertArrayEquals(blob(s, i, p), all.get(p), "step " + i + ": rank " + p);
              continue;
            }
            int[] members = subsets[plan[i]];
            if (java.util.Arrays.binarySearch(members, r) < 0) continue;
            List<byte[]> all = w.allGatherAmong(members, blob(s, i, r));
            assertEquals(members.length, all.size());
            for (int k = 0; k < members.length; k++) {
              assertArrayEquals(blob(s, i, members[k]), all.get(k), "step " + i + ": member " + members[k]);
            }
          }
          w.barrier();
        });
        return "ok";
      }
    });
    assertEquals(List.of("ok", "ok", "ok", "ok"), results, seed.toString());
  }

  /**
   * A subset's member whose connection drops while the others wait in the subset's round: they
   * fail at once naming it, as does a rank outside the subset at its next collective.
   */
  @Test
  void aSubsetMemberThatVanishesFailsTheOthersAtOnceNamingIt() throws Exception {
    int port = freePort();
    CountDownLatch waiting = new CountDownLatch(2);
    List<Object> results = ranks(range(4), r -> {
      ProcessWorld w = ProcessWorld.join(env(r, 4, 4, port), Map.of(), Duration.ofSeconds(10));
      try {
        long start = System.nanoTime();
        if (r == 3) {
          await(waiting);
          sleep(100); // they are in the round by now
          w.dropWithoutGoodbye();
          return "dropped";
        }
        if (r == 0) {
          await(waiting);
          RendezvousException e = assertThrows(RendezvousException.class, () -> {
            while (true) {
              w.checkPeers();
              sleep(5);
            }
          });
          return e;
        }
        waiting.countDown();
        RendezvousException e = assertThrows(RendezvousException.class, () -> w.allGatherAmong(new int[] {1, 2, 3}, new byte[] {1}));
        assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(5), "it waited for the 15 s deadline");
        return e;
      } finally {
        w.close();
      }
    });
    for (int r : List.of(0, 1, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r), "rank " + r);
      assertEquals(List.of(3), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank 3 left the world without closing it"), e.getMessage());
    }
  }

  /**
   * A rank outside the subset fails the world with its own finding (fail) while the subset's
   * members wait for a member that never comes: they get that message and its ranks, not the
   * subset's deadline; and a member that never comes is named by the store at the timeout.
   */
  @Test
  void aFailPushedWhileMembersWaitEndsTheirRoundAndAnAbsentMemberIsNamedAtTheTimeout() throws Exception {
    int port = freePort();
    CountDownLatch waiting = new CountDownLatch(2);
    CountDownLatch failed = new CountDownLatch(2);
    List<Object> results = ranks(range(4), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 4, 4, port), Map.of(), Duration.ofSeconds(10))) {
        if (r == 3) {
          await(failed);
          return "absent";
        }
        if (r == 0) {
          await(waiting);
          sleep(100);
          w.fail("rank 0 found rank 3 dead", List.of(3));
          return "failed it";
        }
        waiting.countDown();
        try {
          return assertThrows(RendezvousException.class, () -> w.allGatherAmong(new int[] {1, 2, 3}, new byte[] {2}));
        } finally {
          failed.countDown();
        }
      }
    });
    for (int r : List.of(1, 2)) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, results.get(r), "rank " + r);
      assertEquals(List.of(3), e.missingRanks(), e.getMessage());
      assertEquals("rank " + r + ": rank 0 found rank 3 dead", e.getMessage());
    }

    int port2 = freePort();
    CountDownLatch done = new CountDownLatch(1);
    List<Object> deadline = ranks(range(2), r -> {
      try (ProcessWorld w = ProcessWorld.join(env(r, 2, 2, port2), Map.of(), SHORT)) {
        if (r == 1) {
          await(done);
          return "absent";
        }
        long start = System.nanoTime();
        try {
          RendezvousException e = assertThrows(RendezvousException.class, () -> w.allGatherAmong(new int[] {0, 1}, new byte[0]));
          return (System.nanoTime() - start) / 1_000_000 + " ms " + e.missingRanks() + ": " + e.getMessage();
        } finally {
          done.countDown();
        }
      }
    });
    String m = assertInstanceOf(String.class, deadline.get(0));
    assertTrue(m.contains(" ms [1]: rank 0: rank(s) [1] did not reach round 1 of the all-gather among ranks [0, 1] within 800 ms"), m);
    long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
    assertTrue(millis >= SHORT.toMillis(), "named at " + millis + " ms, before the timeout of " + SHORT.toMillis() + " ms");
    assertTrue(millis < SHORT.toMillis() + 1_000, "named at " + millis + " ms, well after the timeout of " + SHORT.toMillis() + " ms");
  }

  private static void await(CountDownLatch latch) {
    try {
      assertTrue(latch.await(20, TimeUnit.SECONDS), "the others never got there");
    } catch (InterruptedException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void aPortInUseIsOneClearError() throws Exception {
    try (ServerSocket taken = new ServerSocket(0)) {
      RendezvousException e = assertThrows(RendezvousException.class,
          () -> ProcessWorld.join(env(0, 1, 1, taken.getLocalPort()), Map.of(), SHORT));
      assertTrue(e.getMessage().contains("MASTER_PORT=" + taken.getLocalPort()) && e.getMessage().contains("in use"), e.getMessage());
    }
  }

  @Test
  void anUnreachableMasterFailsWithinTheTimeoutNamingRankZero() {
    int port = freePort();
    long t0 = System.nanoTime();
    RendezvousException e = assertThrows(RendezvousException.class, () -> ProcessWorld.join(env(1, 2, 2, port), Map.of(), SHORT));
    assertTrue((System.nanoTime() - t0) / 1_000_000 < 5_000);
    assertEquals(List.of(0), e.missingRanks());
    assertTrue(e.getMessage().contains("could not reach the store at 127.0.0.1:" + port), e.getMessage());
  }

  @Test
  void anUnknownMasterHostIsOneClearError() {
    RendezvousException e = assertThrows(RendezvousException.class,
        () -> ProcessWorld.join(new RankEnv(1, 2, 1, 2, "no-such-host.invalid", 29500), Map.of(), SHORT));
    assertTrue(e.getMessage().contains("MASTER_ADDR=no-such-host.invalid"), e.getMessage());
  }

  @Test
  void badEnvironmentValuesAreNamed() {
    Map<String, String> ok = Map.of("RANK", "1", "WORLD_SIZE", "4", "LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "2",
        "MASTER_ADDR", "127.0.0.1", "MASTER_PORT", "29500");
    RankEnv env = RankEnv.fromEnv(ok);
    assertEquals(new RankEnv(1, 4, 1, 2, "127.0.0.1", 29500), env);
    assertEquals(2, env.nodes());
    assertEquals(0, env.node());
    assertMessage(with(ok, "RANK", "4"), "RANK=4 is outside [0, WORLD_SIZE=4)");
    assertMessage(with(ok, "RANK", "-1"), "RANK=-1 is outside");
    assertMessage(with(ok, "WORLD_SIZE", "x"), "WORLD_SIZE='x' is not an integer");
    assertMessage(with(ok, "LOCAL_WORLD_SIZE", "3"), "WORLD_SIZE=4 is not a multiple of LOCAL_WORLD_SIZE=3");
    assertMessage(with(ok, "LOCAL_RANK", "0"), "LOCAL_RANK=0 does not match RANK=1");
    assertMessage(with(ok, "MASTER_PORT", "70000"), "MASTER_PORT=70000 is outside");
    assertMessage(with(ok, "MASTER_PORT", null), "MASTER_PORT is not set");
    Map<String, String> oneNode = with(with(ok, "LOCAL_RANK", null), "LOCAL_WORLD_SIZE", null);
    assertEquals(1, RankEnv.fromEnv(oneNode).nodes());
  }

  @Test
  void variablesForAChildReadBackAsTheSamePlace() {
    RankEnv env = RankEnv.fromEnv(RankEnv.variables(5, 8, 4, "127.0.0.1", 1234));
    assertEquals(new RankEnv(5, 8, 1, 4, "127.0.0.1", 1234), env);
    assertEquals(1, env.node());
  }

  private static Map<String, String> with(Map<String, String> base, String key, String value) {
    Map<String, String> m = new java.util.HashMap<>(base);
    if (value == null) m.remove(key);
    else m.put(key, value);
    return m;
  }

  private static void assertMessage(Map<String, String> env, String expected) {
    RendezvousException e = assertThrows(RendezvousException.class, () -> RankEnv.fromEnv(env));
    assertTrue(e.getMessage().contains(expected), e.getMessage());
    assertNull(e.getCause());
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
