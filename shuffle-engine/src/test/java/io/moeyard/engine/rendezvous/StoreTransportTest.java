package io.moeyard.engine.rendezvous;

import static io.moeyard.engine.rendezvous.ProcessWorldTest.env;
import static io.moeyard.engine.rendezvous.ProcessWorldTest.freePort;
import static io.moeyard.engine.rendezvous.ProcessWorldTest.pollUntilThrown;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Ranks as threads of this JVM, each with its own connection to the store, as separate machines would have. */
@Timeout(30)
class StoreTransportTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void stop() {
    pool.shutdownNow();
  }

  interface Body {
    Object run(StoreTransport t) throws Exception;
  }

  /**
   * A world of {@code n} ranks ({@code local} per node) on a free port, each rank's transport
   * opened with {@code piece} bytes per sendRecv round (0: the default) and {@code body} run on it;
   * returns what each rank's body returned or threw (an AssertionError is rethrown).
   */
  private List<Object> ranks(int n, int local, Duration timeout, int piece, Body body) throws Exception {
    int port = freePort();
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        ProcessWorld w = ProcessWorld.join(env(rank, n, local, port), Map.of("job", "store"), timeout);
        try (StoreTransport t = piece == 0 ? StoreTransport.open(w) : StoreTransport.open(w, piece)) {
          try {
            return body.run(t);
          } catch (AssertionError e) {
            t.abort(e); // the others fail at once instead of at the timeout
            throw e;
          }
        } catch (RuntimeException e) {
          return e;
        }
      }));
    }
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : fs) {
      try {
        out.add(f.get(25, TimeUnit.SECONDS));
      } catch (ExecutionException e) {
        if (e.getCause() instanceof AssertionError a) throw a;
        throw e;
      } catch (java.util.concurrent.TimeoutException e) {
        throw new AssertionError("a rank hung", e);
      }
    }
    return out;
  }

  private List<Object> ranks(int n, Body body) throws Exception {
    return ranks(n, n, TIMEOUT, 0, body);
  }

  /** A typed message: what a device backend announces at set-up. */
  record Announce(int rank, String name, long[] counts, byte[] handle) {}

  static final MessageCodec<Announce> ANNOUNCE = new MessageCodec<>() {
    @Override
    public void write(Announce a, MessageWriter out) {
      out.putInt(a.rank).putString(a.name).putLongs(a.counts).putBytes(a.handle);
    }

    @Override
    public Announce read(MessageReader in) {
      return new Announce(in.getInt(), in.getString(), in.getLongs(), in.getBytes());
    }
  };

  private static Announce announce(long seed, int rank) {
    SplittableRandom rnd = new SplittableRandom(seed + rank);
    byte[] handle = new byte[rnd.nextInt(0, 200)];
    rnd.nextBytes(handle);
    return new Announce(rank, rank == 1 ? null : "rank-" + rank + "-ü", rnd.longs(rnd.nextInt(0, 40)).toArray(), handle);
  }

  @Test
  void allGatherCarriesPlainValuesAndCodecTypesInRankOrder() throws Exception {
    TestSeed seed = TestSeed.fresh();
    List<Object> out = ranks(4, 2, TIMEOUT, 0, t -> {
      seed.check(() -> {
        int me = t.rank();
        assertEquals(2, t.topology().nodes());
        assertEquals(2, t.topology().localRanks());
        Object[] mine = {null, me % 2 == 0, me * 7, -3L * me, "r" + me, new int[] {me, -me}, new long[] {me, Long.MIN_VALUE},
            new byte[me]};
        for (Object v : mine) {
          Object[] all = t.allGather(v);
          assertEquals(4, all.length);
          for (int p = 0; p < 4; p++) {
            Object want = switch (v) {
              case null -> null;
              case Boolean b -> p % 2 == 0;
              case Integer i -> p * 7;
              case Long l -> -3L * p;
              case String s -> "r" + p;
              case int[] a -> new int[] {p, -p};
              case long[] a -> new long[] {p, Long.MIN_VALUE};
              case byte[] a -> new byte[p];
              default -> throw new AssertionError(v);
            };
            if (want instanceof int[] a) assertArrayEquals(a, (int[]) all[p]);
            else if (want instanceof long[] a) assertArrayEquals(a, (long[]) all[p]);
            else if (want instanceof byte[] a) assertArrayEquals(a, (byte[]) all[p]);
            else assertEquals(want, all[p], "value from rank " + p);
          }
        }
        for (int round = 0; round < 3; round++) {
          Announce a = announce(seed.value() + 100L * round, me);
          Object[] all = t.allGather(a, ANNOUNCE);
          assertSame(a, all[me]);
          for (int p = 0; p < 4; p++) {
            Announce want = announce(seed.value() + 100L * round, p);
            Announce got = (Announce) all[p];
            assertEquals(want.rank, got.rank);
            assertEquals(want.name, got.name);
            assertArrayEquals(want.counts, got.counts);
            assertArrayEquals(want.handle, got.handle);
          }
          t.barrier();
        }
      });
      return "ok";
    });
    assertEquals(List.of("ok", "ok", "ok", "ok"), out);
  }

  @Test
  void itHasNoSharedMemory() throws Exception {
    List<Object> out = ranks(2, t -> {
      assertFalse(t.peerStores());
      assertFalse(t.sharesAddressSpace());
      try (Arena arena = Arena.ofConfined()) {
        assertFalse(t.reachable(arena.allocate(8)));
      }
      UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> t.peerMemory(1024));
      assertTrue(e.getMessage().contains("StoreTransport has no shared memory"), e.getMessage());
      t.barrier(); // refusing is local and leaves the world usable
      return "ok";
    });
    assertEquals(List.of("ok", "ok"), out);
  }

  /** A message that is one segment. */
  static final MessageCodec<MemorySegment> SEGMENT = new MessageCodec<>() {
    @Override
    public void write(MemorySegment s, MessageWriter out) {
      out.putSegment(s);
    }

    @Override
    public MemorySegment read(MessageReader in) {
      return in.getSegment();
    }
  };

  @Test
  void aSegmentInAMessageFailsEveryRankNamingTheSenderAndTheWorldGoesOn() throws Exception {
    List<Object> out = ranks(3, t -> {
      try (Arena arena = Arena.ofConfined()) {
        MemorySegment s = t.rank() == 1 ? arena.allocate(16) : null; // the others send null, which is fine
        CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(s, SEGMENT));
        Object[] ok = t.allGather(null, SEGMENT);
        assertNull(ok[(t.rank() + 1) % 3]);
        CollectiveException plain = assertThrows(CollectiveException.class,
            () -> t.allGather(t.rank() == 2 ? new StringBuilder("x") : (Object) 5));
        t.barrier();
        return e.getMessage() + " | " + plain.getMessage();
      }
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.contains("rank 1: a message names a segment of 16 bytes, but StoreTransport has no shared memory"), m);
      assertTrue(m.contains("rank 2: a process transport needs a MessageCodec for java.lang.StringBuilder"), m);
    }
  }

  @Test
  void aMessageOverTheStoresLimitFailsEveryRankNamingIt() throws Exception {
    List<Object> out = ranks(2, t -> {
      CollectiveException e = assertThrows(CollectiveException.class,
          () -> t.allGather(t.rank() == 1 ? new byte[Wire.MAX_BLOB] : new byte[1]));
      t.barrier();
      return e.getMessage();
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.contains("rank 1: a message of " + (Wire.MAX_BLOB + 12) + " bytes exceeds the store's limit of " + Wire.MAX_BLOB), m);
    }
  }

  /** Message bytes from p to q in round i: random, many empty, some long enough for several pieces. */
  private static int size(long seed, int i, int p, int q, int shape, int ranks) {
    if (shape == 1) return 0; // nobody sends anything
    if (shape == 2 && q == ranks - 1) return 0; // the last rank receives nothing
    if (shape == 3 && q != 0) return 0; // everything goes to rank 0
    int n = new SplittableRandom(seed * 1_000_003L + i * 4099L + p * 64L + q).nextInt(-400, 1000);
    return Math.max(0, n);
  }

  private static byte payload(long seed, int i, int p, int q, long b) {
    return (byte) (seed + 31L * i + 17L * p + 7L * q + b * 13 + (b >> 8));
  }

  /** Random sizes (0 and self included) in rounds of small pieces and of the default; every byte checked. */
  private void everyMessageArrives(int ranks, int piece) throws Exception {
    TestSeed seed = TestSeed.fresh();
    long s = seed.value();
    List<Object> out = ranks(ranks, ranks, TIMEOUT, piece, t -> {
      seed.check(() -> {
        int me = t.rank();
        try (Arena arena = Arena.ofConfined()) {
          for (int i = 0; i < 8; i++) {
            int shape = i < 4 ? i : 0;
            MemorySegment[] send = new MemorySegment[ranks];
            MemorySegment[] recv = new MemorySegment[ranks];
            for (int q = 0; q < ranks; q++) {
              int n = size(s, i, me, q, shape, ranks);
              // heap and native memory alike; nothing to send: null or empty
              send[q] = n == 0 && q % 2 == 0 ? null : (q % 2 == 0 ? arena.allocate(n) : MemorySegment.ofArray(new byte[n]));
              for (int b = 0; b < n; b++) send[q].set(ValueLayout.JAVA_BYTE, b, payload(s, i, me, q, b));
              int m = size(s, i, q, me, shape, ranks);
              recv[q] = m == 0 && q % 2 == 1 ? null : arena.allocate(m);
            }
            t.sendRecv(send, recv);
            for (int p = 0; p < ranks; p++) {
              int m = size(s, i, p, me, shape, ranks);
              for (int b = 0; b < m; b++) {
                assertEquals(payload(s, i, p, me, b), recv[p].get(ValueLayout.JAVA_BYTE, b), "round " + i + " from " + p + " byte " + b);
              }
            }
          }
        }
      });
      return "ok";
    });
    for (Object o : out) assertEquals("ok", o);
  }

  @Test
  void sendRecvMovesEveryByteInManySmallPieces() throws Exception {
    everyMessageArrives(4, 97);
  }

  @Test
  void sendRecvMovesEveryByteInOnePiece() throws Exception {
    everyMessageArrives(3, 0);
  }

  @Test
  void sendRecvOnOneRankCopiesToItself() throws Exception {
    List<Object> out = ranks(1, 1, TIMEOUT, 3, t -> {
      byte[] b = {1, 2, 3, 4, 5, 6, 7};
      byte[] got = new byte[7];
      t.sendRecv(new MemorySegment[] {MemorySegment.ofArray(b)}, new MemorySegment[] {MemorySegment.ofArray(got)});
      assertArrayEquals(b, got);
      return "ok";
    });
    assertEquals(List.of("ok"), out);
  }

  @Test
  void aSizeMismatchFailsEveryRankNamingBothBeforeAnythingIsCopied() throws Exception {
    List<Object> out = ranks(3, 3, TIMEOUT, 5, t -> {
      int me = t.rank();
      byte[] in = new byte[64];
      java.util.Arrays.fill(in, (byte) -1);
      MemorySegment buf = MemorySegment.ofArray(in);
      MemorySegment[] send = new MemorySegment[3];
      MemorySegment[] recv = new MemorySegment[3];
      send[(me + 1) % 3] = MemorySegment.ofArray(new byte[8]);
      // rank 2 expects 4 bytes from rank 1, which sends 8
      recv[(me + 2) % 3] = buf.asSlice(8, me == 2 ? 4 : 8);
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.sendRecv(send, recv));
      for (byte b : in) assertEquals(-1, b, "nothing may be copied");
      // a rank with the wrong number of segments fails every rank too, naming it
      CollectiveException shape = assertThrows(CollectiveException.class,
          () -> t.sendRecv(new MemorySegment[me == 0 ? 2 : 3], new MemorySegment[3]));
      MemorySegment[] readOnly = recv.clone();
      if (me == 1) readOnly[(me + 2) % 3] = recv[(me + 2) % 3].asReadOnly();
      CollectiveException ro = assertThrows(CollectiveException.class, () -> t.sendRecv(send, readOnly));
      MemorySegment[] closed = send.clone();
      if (me == 2) {
        try (Arena gone = Arena.ofConfined()) {
          closed[(me + 1) % 3] = gone.allocate(8);
        }
      }
      recv[(me + 2) % 3] = buf.asSlice(8, 8); // the sizes match now: only the closed segment is wrong
      CollectiveException dead = assertThrows(CollectiveException.class, () -> t.sendRecv(closed, recv));
      for (byte b : in) assertEquals(-1, b, "nothing may be copied");
      t.barrier(); // bad input leaves the world usable
      return e.getMessage() + " | " + shape.getMessage() + " | " + ro.getMessage() + " | " + dead.getMessage();
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.contains("sendRecv: rank 1 sends rank 2 8 bytes, rank 2 expects 4"), m);
      assertTrue(m.contains("rank 0: sendRecv needs one send and one receive segment per rank (3), got 2 and 3"), m);
      assertTrue(m.contains("rank 1: sendRecv's receive segment for rank 0 is read-only"), m);
      assertTrue(m.contains("rank 2: a sendRecv segment for rank 0 is no longer alive"), m);
    }
  }

  @Test
  void aRankThatNeverArrivesIsNamedWithinTheTimeoutAndTheFailureStays() throws Exception {
    Duration shortTimeout = Duration.ofMillis(800);
    long t0 = System.nanoTime();
    List<Object> out = ranks(3, 3, shortTimeout, 0, t -> {
      t.barrier();
      if (t.rank() == 1) {
        Thread.sleep(shortTimeout.toMillis() + 1000);
        return "skipped";
      }
      CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, t::barrier);
      CollectiveTimeoutException again = assertThrows(CollectiveTimeoutException.class, () -> t.allGather(1L));
      assertEquals(e.getMessage(), again.getMessage());
      return e;
    });
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertEquals("skipped", out.get(1));
    for (int r : List.of(0, 2)) {
      CollectiveTimeoutException e = assertInstanceOf(CollectiveTimeoutException.class, out.get(r));
      assertEquals(List.of(1), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank(s) [1] did not reach all-gather round"), e.getMessage());
    }
    assertTrue(ms < 8_000, "took " + ms + " ms");
  }

  @Test
  void anAbortFailsEveryRankAtOnceNamingTheCause() throws Exception {
    long t0 = System.nanoTime();
    List<Object> out = ranks(3, t -> {
      t.barrier();
      if (t.rank() == 2) {
        t.abort(new IllegalStateException("bad shape 7"));
        CollectiveException e = assertThrows(CollectiveException.class, t::barrier);
        assertThrows(CollectiveException.class, () -> t.sendRecv(new MemorySegment[3], new MemorySegment[3]));
        return e;
      }
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(t.rank()));
      CollectiveException again = assertThrows(CollectiveException.class, t::barrier);
      assertEquals(e.getMessage(), again.getMessage());
      return e;
    });
    long ms = (System.nanoTime() - t0) / 1_000_000;
    for (Object o : out) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, o);
      assertFalse(e instanceof CollectiveTimeoutException, e.getMessage());
      assertTrue(e.getMessage().contains("world aborted by rank 2: java.lang.IllegalStateException: bad shape 7"), e.getMessage());
    }
    assertTrue(ms < 5_000, "an abort should fail the others well before the 10 s timeout; took " + ms + " ms");
  }

  @Test
  void anAbortFromAnotherThreadEndsThisRanksOwnWait() throws Exception {
    List<Object> out = ranks(2, t -> {
      if (t.rank() == 1) {
        Thread.sleep(1500); // arrives late: the world failed meanwhile
        return assertThrows(CollectiveException.class, t::barrier);
      }
      Thread watchdog = Thread.ofPlatform().start(() -> {
        try {
          Thread.sleep(300);
        } catch (InterruptedException e) {
          return;
        }
        t.abort(new RuntimeException("watchdog of rank 0"));
      });
      long t0 = System.nanoTime();
      try {
        CollectiveException e = assertThrows(CollectiveException.class, t::barrier); // waits for rank 1 until the abort
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 1_400, "the abort should end the wait before rank 1 arrives; took " + ms + " ms");
        return e;
      } finally {
        watchdog.join();
      }
    });
    for (Object o : out) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, o);
      assertTrue(e.getMessage().contains("world aborted by rank 0: java.lang.RuntimeException: watchdog of rank 0"), e.getMessage());
    }
  }

  @Test
  void checkPeersOnAHealthyWorldReturnsAndCollectivesGoOn() throws Exception {
    List<Object> out = ranks(3, t -> {
      for (int round = 0; round < 5; round++) {
        for (int k = 0; k <= round % 2; k++) t.checkPeers();
        Object[] all = t.allGather((long) t.rank() * 100 + round);
        for (int p = 0; p < 3; p++) assertEquals((long) p * 100 + round, all[p]);
        t.checkPeers();
      }
      return "ok";
    });
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  /** A rank aborts between collectives: the others' checkPeers throws it (not as a timeout), then their next collective. */
  @Test
  void checkPeersThrowsAnAbort() throws Exception {
    List<Object> out = ranks(3, t -> {
      t.barrier();
      if (t.rank() == 1) {
        t.abort(new IllegalStateException("bad shape 8"));
        CollectiveException own = assertThrows(CollectiveException.class, t::checkPeers);
        assertThrows(CollectiveException.class, t::barrier);
        return own;
      }
      CollectiveException e = pollUntilThrown(CollectiveException.class, t::checkPeers);
      assertFalse(e instanceof CollectiveTimeoutException, e.getMessage());
      assertEquals(e.getMessage(), assertThrows(CollectiveException.class, t::barrier).getMessage());
      assertEquals(e.getMessage(), assertThrows(CollectiveException.class, t::checkPeers).getMessage());
      return e;
    });
    for (Object o : out) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, o);
      assertTrue(e.getMessage().contains("world aborted by rank 1: java.lang.IllegalStateException: bad shape 8"), e.getMessage());
    }
  }

  /**
   * A rank's process "crashes" (its connection drops without goodbye) between collectives: the
   * others' checkPeers throws a CollectiveTimeoutException naming it, and their next collective
   * throws the same.
   */
  @Test
  void checkPeersNamesARankWhoseConnectionDropped() throws Exception {
    int port = freePort();
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < 3; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        ProcessWorld w = ProcessWorld.join(env(rank, 3, 3, port), Map.of("job", "drop"), TIMEOUT);
        StoreTransport t = StoreTransport.open(w);
        t.barrier();
        if (rank == 2) {
          w.dropWithoutGoodbye();
          return "dropped";
        }
        try (t) {
          CollectiveTimeoutException e = pollUntilThrown(CollectiveTimeoutException.class, t::checkPeers);
          CollectiveTimeoutException next = assertThrows(CollectiveTimeoutException.class, () -> t.allGather(1L));
          assertEquals(e.getMessage(), next.getMessage());
          assertEquals(e.missingRanks(), next.missingRanks());
          return e;
        }
      }));
    }
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : fs) out.add(f.get(20, TimeUnit.SECONDS));
    assertEquals("dropped", out.get(2));
    for (int r : List.of(0, 1)) {
      CollectiveTimeoutException e = assertInstanceOf(CollectiveTimeoutException.class, out.get(r));
      assertEquals(List.of(2), e.missingRanks(), e.getMessage());
      assertTrue(e.getMessage().contains("rank 2 left the world without closing it"), e.getMessage());
    }
  }
}
