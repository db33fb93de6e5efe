package io.moeyard.engine.shm;

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
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.RendezvousException;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Ranks as threads of this JVM, each with its own connection to the store and its own mapping of
 * its machine's control block, as processes would have; machines are pretended by name, so ranks
 * of "different machines" share /dev/shm here but never their control block.
 */
@Timeout(60)
class ClusterTransportTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);
  private static final Duration SHORT = Duration.ofMillis(500);
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void nothingLeft() throws InterruptedException {
    pool.shutdownNow();
    assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "a rank thread is still running");
    List<Path> files = ShmFiles.list(ProcessHandle.current().pid());
    assertTrue(files.isEmpty(), "shared-memory files left behind: " + files);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
    while (true) {
      List<String> store = Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).map(Thread::getName)
          .filter(n -> n.startsWith("moeyard-store")).toList();
      if (store.isEmpty()) break;
      assertTrue(System.nanoTime() < deadline, "store threads left running: " + store);
      Thread.sleep(20);
    }
  }

  static int freePort() {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static RankEnv env(int rank, int size, int port) {
    return new RankEnv(rank, size, rank, size, "127.0.0.1", port);
  }

  static String machine(int m) {
    return "pretend-machine-" + m;
  }

  interface Body {
    Object run(ClusterTransport t) throws Exception;
  }

  /**
   * A world of {@code machines.length} ranks, rank r on {@code machine(machines[r])}, each running
   * {@code body} on its transport; returns what each rank's body returned or the RuntimeException
   * it threw (an AssertionError is rethrown, after aborting the world so that the others end).
   */
  private List<Object> ranks(int[] machines, Duration timeout, Body body) throws Exception {
    return ranks(machines, freePort(), timeout, r -> ShmFiles.dir(), body);
  }

  /** {@link #ranks(int[], Duration, Body)} at the store's {@code port}, rank r's machine files under {@code dirOf(r)}. */
  private List<Object> ranks(int[] machines, int port, Duration timeout, IntFunction<Path> dirOf, Body body) throws Exception {
    int n = machines.length;
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        ProcessWorld w = ProcessWorld.join(env(rank, n, port), Map.of("job", "cluster"), timeout);
        try (ClusterTransport t = ClusterTransport.open(w, timeout, machine(machines[rank]), dirOf.apply(rank))) {
          try {
            return body.run(t);
          } catch (AssertionError e) {
            t.abort(e);
            throw e;
          }
        } catch (RuntimeException e) {
          return e;
        }
      }));
    }
    return results(fs);
  }

  /** Every rank's result; the first rank's AssertionError, with every other rank's failure attached. */
  /** {@code n} ranks each joining as {@code join} says (given its rank and environment): "joined", or what it threw. */
  private List<Object> joins(int n, java.util.function.BiFunction<Integer, RankEnv, ClusterTransport> join) throws Exception {
    int port = freePort();
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        try (ClusterTransport t = join.apply(rank, env(rank, n, port))) {
          return "joined";
        } catch (RuntimeException e) {
          return e;
        }
      }));
    }
    return results(fs);
  }

  private static List<Object> results(List<Future<Object>> fs) throws Exception {
    List<Object> out = new ArrayList<>();
    AssertionError first = null;
    List<Throwable> others = new ArrayList<>();
    for (int r = 0; r < fs.size(); r++) {
      try {
        out.add(fs.get(r).get(40, TimeUnit.SECONDS));
      } catch (ExecutionException e) {
        if (first == null && e.getCause() instanceof AssertionError a) first = a;
        else others.add(new AssertionError("rank " + r, e.getCause()));
        out.add(e.getCause());
      } catch (java.util.concurrent.TimeoutException e) {
        throw new AssertionError("rank " + r + " hung", e);
      }
    }
    if (first != null) {
      for (Throwable t : others) first.addSuppressed(t);
      throw first;
    }
    return out;
  }

  /** Machine indices in order of first appearance by rank: what machineOf must say. */
  private static int[] firstAppearance(int[] machines) {
    Map<Integer, Integer> index = new LinkedHashMap<>();
    int[] out = new int[machines.length];
    for (int r = 0; r < machines.length; r++) out[r] = index.computeIfAbsent(machines[r], k -> index.size());
    return out;
  }

  record Announce(int rank, String name, long[] counts) {}

  static final MessageCodec<Announce> ANNOUNCE = new MessageCodec<>() {
    @Override
    public void write(Announce a, MessageWriter out) {
      out.putInt(a.rank).putString(a.name).putLongs(a.counts);
    }

    @Override
    public Announce read(MessageReader in) {
      return new Announce(in.getInt(), in.getString(), in.getLongs());
    }
  };

  private static Announce announce(long seed, int round, int rank) {
    SplittableRandom rnd = new SplittableRandom(seed * 31 + round * 1_000_003L + rank);
    return new Announce(rank, rnd.nextInt(4) == 0 ? null : "rank-" + rank + "-" + round, rnd.longs(rnd.nextInt(0, 300)).toArray());
  }

  /** Rank p's bytes in round i: random, {@code max} at most. */
  private static byte[] bytes(long seed, int round, int rank, int min, int max) {
    SplittableRandom rnd = new SplittableRandom(seed * 17 + round * 7919L + rank * 104_729L);
    byte[] b = new byte[rnd.nextInt(min, max + 1)];
    rnd.nextBytes(b);
    return b;
  }

  /** What round i does, alike on every rank. */
  private enum Op { BYTES, CODEC, LONG, BARRIER, MACHINE_BARRIER, ONE_TOO_BIG, WORLD_TOO_BIG }

  /**
   * Many rounds of every kind on one world, each rank checking every rank's message (by world
   * rank) against what it must be: small bytes and codec messages through the blocks and the
   * leaders, a round with one message too big for a slot, and one whose world does not fit a
   * slot though each message does (both through the store, for every rank alike), barriers.
   */
  private void gatherRounds(TestSeed seed, int[] machines, int rounds) throws Exception {
    int n = machines.length;
    int[] expectedMachine = firstAppearance(machines);
    long s = seed.value();
    int slot = ClusterTransport.SLOT_BYTES;
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      seed.check(() -> {
        int me = t.rank();
        assertEquals(n, t.size());
        for (int r = 0; r < n; r++) assertEquals(expectedMachine[r], t.machineOf(r), "machine of rank " + r);
        assertEquals(Arrays.stream(expectedMachine).max().orElse(0) + 1, t.machines());
        SplittableRandom ops = new SplittableRandom(s + 12345);
        for (int i = 0; i < rounds; i++) {
          Op op = Op.values()[ops.nextInt(Op.values().length)];
          int big = ops.nextInt(n);
          switch (op) {
            case BYTES, ONE_TOO_BIG, WORLD_TOO_BIG -> {
              byte[] mine = switch (op) {
                case BYTES -> bytes(s, i, me, 0, 3000);
                case ONE_TOO_BIG -> me == big ? bytes(s, i, me, slot, slot + 5000) : bytes(s, i, me, 0, 100);
                default -> bytes(s, i, me, slot / n + 100, slot / n + 2000);
              };
              Object[] all = t.allGather(mine);
              assertEquals(n, all.length);
              assertSame(mine, all[me]);
              for (int p = 0; p < n; p++) {
                byte[] want = switch (op) {
                  case BYTES -> bytes(s, i, p, 0, 3000);
                  case ONE_TOO_BIG -> p == big ? bytes(s, i, p, slot, slot + 5000) : bytes(s, i, p, 0, 100);
                  default -> bytes(s, i, p, slot / n + 100, slot / n + 2000);
                };
                assertArrayEquals(want, (byte[]) all[p], "round " + i + " (" + op + "): rank " + p + "'s message");
              }
            }
            case CODEC -> {
              Object[] all = t.allGather(announce(s, i, me), ANNOUNCE);
              for (int p = 0; p < n; p++) {
                Announce want = announce(s, i, p);
                Announce got = (Announce) all[p];
                assertEquals(want.rank, got.rank, "round " + i + ": rank " + p);
                assertEquals(want.name, got.name, "round " + i + ": rank " + p);
                assertArrayEquals(want.counts, got.counts, "round " + i + ": rank " + p);
              }
            }
            case LONG -> {
              Object[] all = t.allGather(s * 3 + 1000L * i + me);
              for (int p = 0; p < n; p++) assertEquals(s * 3 + 1000L * i + p, all[p], "round " + i + ": rank " + p);
            }
            case BARRIER -> t.barrier();
            case MACHINE_BARRIER -> t.machineBarrier();
          }
        }
        t.checkPeers(); // nobody has left yet: the barrier below holds them
        t.barrier();
      });
      return "ok";
    });
    for (Object o : out) assertEquals("ok", o, seed + " machines " + Arrays.toString(machines));
  }

  interface Checks {
    void run(ClusterTransport t) throws Exception;
  }

  /** Every rank of a world on {@code machines} runs {@code checks} to the end; a failure names the seed and the machines. */
  private void everyRankPasses(TestSeed seed, int[] machines, Checks checks) throws Exception {
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      seed.check(() -> checks.run(t));
      return "ok";
    });
    for (Object o : out) assertEquals("ok", o, seed + " machines " + Arrays.toString(machines));
  }

  /** World w of a random series: the first one rank, then 2 to 6 ranks on 1 to 3 machines, interleaved at random. */
  private static int[] randomMachines(SplittableRandom rnd, int w) {
    int n = w == 0 ? 1 : rnd.nextInt(2, 7);
    int k = rnd.nextInt(1, Math.min(3, n) + 1);
    int[] machines = new int[n];
    for (int r = 0; r < n; r++) machines[r] = rnd.nextInt(k);
    return machines;
  }

  @Test
  void allGatherGivesEveryRanksMessageByWorldRankOnInterleavedMachines() throws Exception {
    TestSeed seed = TestSeed.fresh();
    gatherRounds(seed, new int[] {0, 1, 0, 1}, 40);
    gatherRounds(new TestSeed(seed.value() + 1), new int[] {2, 0, 0, 1, 2, 0}, 30); // names out of order, uneven
  }

  @Test
  void allGatherGivesEveryRanksMessageOnRandomWorlds() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int w = 0; w < 5; w++) gatherRounds(new TestSeed(seed.value() + 100 * w), randomMachines(rnd, w), 20);
  }

  /** Bytes of the blob a rank's byte[] message of {@code len} bytes travels as (status word, PLAIN tag and value). */
  private static int blobBytes(int len) {
    MessageWriter w = new MessageWriter(null).putInt(0);
    MessageCodec.PLAIN.write(new byte[len], w);
    return w.toBytes().length;
  }

  /**
   * Messages at the slot's limits, on two machines: one exactly filling its slot and one a byte
   * over it; a world whose hand-over exactly fills the leader's slot and one a byte over it. Each
   * round gives every rank every message, whichever way it went (blocks or the store).
   */
  @Test
  void messagesAndWorldsAtTheSlotsLimitReachEveryRank() throws Exception {
    TestSeed seed = TestSeed.fresh();
    long s = seed.value();
    int[] machines = {0, 1, 0, 1};
    int n = machines.length;
    int capacity = ClusterTransport.SLOT_BYTES - 4; // a slot holds the length, then the bytes
    int overhead = blobBytes(0);
    int[][] lens = new int[4][n];
    for (int extra = 0; extra < 2; extra++) {
      // rank 1's message alone at (or a byte over) its slot's limit
      Arrays.fill(lens[extra], 10);
      lens[extra][1] = capacity + extra - overhead;
      // the hand-over (kind, then length and bytes per rank) at (or a byte over) the leader's slot
      int[] w = lens[2 + extra];
      int each = (capacity - 1) / n - 4 - overhead;
      Arrays.fill(w, each);
      int handOver = 1 + n * (4 + overhead + each);
      w[n - 1] += capacity + extra - handOver;
      int total = 1;
      for (int len : w) total += 4 + blobBytes(len);
      assertEquals(capacity + extra, total, "the hand-over's size");
      assertEquals(capacity + extra, blobBytes(lens[extra][1]), "rank 1's message's size");
    }
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      seed.check(() -> {
        int me = t.rank();
        for (int i = 0; i < lens.length; i++) {
          Object[] all = t.allGather(bytes(s, i, me, lens[i][me], lens[i][me]));
          for (int p = 0; p < n; p++) {
            assertArrayEquals(bytes(s, i, p, lens[i][p], lens[i][p]), (byte[]) all[p], "round " + i + ": rank " + p + "'s message");
          }
        }
        t.barrier();
      });
      return "ok";
    });
    assertEquals(List.of("ok", "ok", "ok", "ok"), out);
  }

  @Test
  void sendRecvMovesEveryByteBetweenMachines() throws Exception {
    TestSeed seed = TestSeed.fresh();
    long s = seed.value();
    int[] machines = {0, 1, 1, 0};
    int n = machines.length;
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      seed.check(() -> {
        int me = t.rank();
        try (Arena arena = Arena.ofConfined()) {
          for (int i = 0; i < 4; i++) {
            MemorySegment[] send = new MemorySegment[n];
            MemorySegment[] recv = new MemorySegment[n];
            for (int q = 0; q < n; q++) {
              byte[] b = pair(s, i, me, q);
              send[q] = b.length == 0 ? null : (q % 2 == 0 ? MemorySegment.ofArray(b) : arena.allocate(b.length).copyFrom(MemorySegment.ofArray(b)));
              recv[q] = arena.allocate(pair(s, i, q, me).length);
            }
            t.sendRecv(send, recv);
            for (int p = 0; p < n; p++) {
              assertArrayEquals(pair(s, i, p, me), recv[p].toArray(ValueLayout.JAVA_BYTE), "round " + i + " from rank " + p);
            }
            t.allGather(me); // a meeting between sendRecvs keeps the rounds in step
          }
        }
      });
      return "ok";
    });
    for (Object o : out) assertEquals("ok", o);
  }

  /** How rank p's message to q travels in a round of {@link #sendRecvRounds}: which memory it is sent from. */
  private enum Kind { HEAP, OFF_HEAP, PEER }

  /** Bytes from p to q in round i of a random series: empty, one byte, odd sizes, now and then a few MiB. */
  private static long pairBytes(long seed, int round, int p, int q) {
    SplittableRandom rnd = new SplittableRandom(seed * 13 + round * 65_537L + p * 257L + q);
    return switch (rnd.nextInt(10)) {
      case 0, 1 -> 0;
      case 2 -> 1;
      case 3 -> rnd.nextInt(1, 3) << 20 | rnd.nextInt(1, 4096); // a few MiB, odd
      default -> rnd.nextInt(2, 70_000);
    };
  }

  private static Kind pairKind(long seed, int round, int p, int q) {
    return Kind.values()[new SplittableRandom(seed * 7 + round * 8191L + p * 31L + q).nextInt(Kind.values().length)];
  }

  /** The message itself: a cheap pseudo-random fill, different for every (round, sender, receiver). */
  private static void fill(MemorySegment seg, long seed, int round, int p, int q) {
    SplittableRandom rnd = new SplittableRandom(seed ^ (round * 1_000_003L + p * 4099L + q));
    long n = seg.byteSize();
    long i = 0;
    for (; i + 8 <= n; i += 8) seg.set(ValueLayout.JAVA_LONG_UNALIGNED, i, rnd.nextLong());
    for (; i < n; i++) seg.set(ValueLayout.JAVA_BYTE, i, (byte) rnd.nextInt());
  }

  /** The largest message a round sends from peer memory (bigger ones go from plain off-heap memory). */
  private static final long PEER_MAX = 256 << 10;

  /**
   * {@code rounds} sendRecv rounds back to back on a world on {@code machines}, every rank
   * checking every byte it receives against the sender's fill: random sizes (0, 1, odd, a few MiB)
   * from heap, off-heap and peer memory. Send buffers are refilled (heap, peer memory) or freed
   * (off-heap: the round's arena closes) two rounds later, once the next round has returned, as
   * the contract allows; so are the receive buffers, which no round clears before it.
   */
  private void sendRecvRounds(TestSeed seed, int[] machines, int rounds) throws Exception {
    long s = seed.value();
    int n = machines.length;
    everyRankPasses(seed, machines, t -> {
      int me = t.rank();
      try (PeerMemory peer = t.peerMemory(2 * n * PEER_MAX); Arena recvArena = Arena.ofShared()) {
        MemorySegment[] peerSets = {peer.allocate(n * PEER_MAX, 64), peer.allocate(n * PEER_MAX, 64)};
        Arena[] sendArenas = new Arena[rounds];
        try {
          for (int i = 0; i < rounds; i++) {
            if (i >= 2) sendArenas[i - 2].close(); // round i - 1 returned: round i - 2's send buffers are free
            Arena a = sendArenas[i] = Arena.ofShared();
            MemorySegment[] send = new MemorySegment[n];
            MemorySegment[] recv = new MemorySegment[n];
            for (int q = 0; q < n; q++) {
              long bytes = pairBytes(s, i, me, q);
              Kind kind = pairKind(s, i, me, q);
              if (kind == Kind.PEER && bytes > PEER_MAX) kind = Kind.OFF_HEAP;
              send[q] = bytes == 0 && q % 2 == 0 ? null : switch (kind) {
                case HEAP -> MemorySegment.ofArray(new byte[(int) bytes]);
                case OFF_HEAP -> a.allocate(Math.max(1, bytes)).asSlice(0, bytes);
                case PEER -> peerSets[i % 2].asSlice(q * PEER_MAX, bytes);
              };
              if (send[q] != null) fill(send[q], s, i, me, q);
              long from = pairBytes(s, i, q, me);
              recv[q] = from == 0 && q % 3 == 0 ? null : (q + i) % 2 == 0 ? recvArena.allocate(Math.max(1, from)).asSlice(0, from)
                  : MemorySegment.ofArray(new byte[(int) from]);
            }
            t.sendRecv(send, recv);
            for (int p = 0; p < n; p++) {
              long from = pairBytes(s, i, p, me);
              if (recv[p] == null) continue;
              MemorySegment want = MemorySegment.ofArray(new byte[(int) from]);
              fill(want, s, i, p, me);
              long at = recv[p].mismatch(want);
              assertEquals(-1, at, "round " + i + ": the " + from + " bytes from rank " + p + " (machine " + machines[p]
                  + ", " + pairKind(s, i, p, me) + ") differ at byte " + at);
            }
          }
        } finally {
          for (Arena a : sendArenas) if (a != null && a.scope().isAlive()) a.close();
        }
        t.barrier();
      }
    });
  }

  /** A message shaped as a sendRecv round's post: two longs per peer, a segment per peer. */
  private record Post(long[] sendBytes, long[] recvBytes, MemorySegment[] shared) {}

  private static final MessageCodec<Post> POST = new MessageCodec<>() {
    @Override
    public void write(Post p, MessageWriter out) {
      out.putLongs(p.sendBytes()).putLongs(p.recvBytes());
      for (MemorySegment s : p.shared()) out.putSegment(s);
    }

    @Override
    public Post read(MessageReader in) {
      long[] sendBytes = in.getLongs();
      long[] recvBytes = in.getLongs();
      MemorySegment[] shared = new MemorySegment[sendBytes.length];
      for (int q = 0; q < shared.length; q++) shared[q] = in.getSegment();
      return new Post(sendBytes, recvBytes, shared);
    }
  };

  /**
   * A sendRecv round within a machine allocates little beyond the all-gather of its post (the
   * control plane: encoding, and every peer's post decoded): its per-peer arrays are the
   * transport's, sized when it is built. Counted per rank thread over 1000 rounds after warm-up,
   * against 1000 all-gathers of a message of the same shape. A round still takes 300 to 450 bytes
   * more than its all-gather (its waits; the rest not traced); before its arrays moved into the
   * transport (and RegionTable walked an iterator per segment) it took 670 to 800 more.
   */
  @Test
  void aSendRecvRoundAllocatesLittleBeyondItsAllGather() throws Exception {
    int n = 4;
    com.sun.management.ThreadMXBean threads =
        (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
    List<Object> out = ranks(new int[n], TIMEOUT, t -> {
      int me = t.rank();
      try (PeerMemory peer = t.peerMemory(n * 64L); Arena recvArena = Arena.ofShared()) {
        MemorySegment mine = peer.allocate(n * 64L, 64);
        MemorySegment into = recvArena.allocate(n * 64L, 64);
        MemorySegment[] send = new MemorySegment[n];
        MemorySegment[] recv = new MemorySegment[n];
        long[] bytes = new long[n];
        MemorySegment[] shared = new MemorySegment[n];
        for (int q = 0; q < n; q++) {
          send[q] = mine.asSlice(q * 64L, 64);
          recv[q] = into.asSlice(q * 64L, 64);
          bytes[q] = 64;
          shared[q] = q == me ? null : send[q];
        }
        Post post = new Post(bytes, bytes, shared);
        for (int i = 0; i < 20; i++) t.sendRecv(send, recv); // warm
        // waits allocate now and then (a liveness check, more often on a busy host), which only
        // adds: the least of many single rounds is the round's own allocation
        long round = Long.MAX_VALUE;
        long gather = Long.MAX_VALUE;
        for (int i = 0; i < 500; i++) {
          long start = threads.getCurrentThreadAllocatedBytes();
          t.sendRecv(send, recv);
          round = Math.min(round, threads.getCurrentThreadAllocatedBytes() - start);
          start = threads.getCurrentThreadAllocatedBytes();
          t.allGather(post, POST);
          gather = Math.min(gather, threads.getCurrentThreadAllocatedBytes() - start);
        }
        t.barrier();
        return new long[] {round, gather};
      }
    });
    // waits allocate a little (a liveness check now and then), unevenly between ranks: the rank
    // that waited least tells the round's own allocation best
    long least = Long.MAX_VALUE;
    StringBuilder figures = new StringBuilder();
    for (int r = 0; r < n; r++) {
      if (out.get(r) instanceof Throwable e) throw new AssertionError("rank " + r, e);
      long[] f = (long[]) out.get(r);
      least = Math.min(least, f[0] - f[1]);
      figures.append(" rank ").append(r).append(": ").append(f[0]).append(" (all-gather ").append(f[1]).append(')');
    }
    assertTrue(least <= 128, "a sendRecv round allocates " + least + " bytes more than its all-gather on every rank:" + figures);
    System.out.println("sendRecv within a machine, bytes per round:" + figures);
  }

  @Test
  void sendRecvMovesEveryByteOnRandomWorlds() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    sendRecvRounds(seed, new int[] {0, 1, 0, 2, 1}, 6); // interleaved
    sendRecvRounds(new TestSeed(seed.value() + 1), new int[] {0, 0, 0}, 4); // one machine: peer memory and loopback links
    for (int w = 0; w < 5; w++) sendRecvRounds(new TestSeed(seed.value() + 100 * (w + 1)), randomMachines(rnd, w), 4);
  }

  /** A heap segment over an array of {@code bytes} bytes of the kind {@code k} picks: float[], long[], int[], short[], double[], char[]. */
  private static MemorySegment wideHeap(int k, long bytes) {
    return switch (k % 6) {
      case 0 -> MemorySegment.ofArray(new float[(int) (bytes / 4)]);
      case 1 -> MemorySegment.ofArray(new long[(int) (bytes / 8)]);
      case 2 -> MemorySegment.ofArray(new int[(int) (bytes / 4)]);
      case 3 -> MemorySegment.ofArray(new short[(int) (bytes / 2)]);
      case 4 -> MemorySegment.ofArray(new double[(int) (bytes / 8)]);
      default -> MemorySegment.ofArray(new char[(int) (bytes / 2)]);
    };
  }

  /**
   * A transport that carries the bytes takes any segment: heap segments over float[], long[] and
   * the other arrays that are not byte[] (which NIO cannot read or write in place), sent and
   * received between machines, sizes from one element to a few MiB (more than one staging
   * buffer, so partial writes and reads), every byte checked.
   */
  @Test
  void sendRecvCarriesHeapSegmentsOfAnyArrayBetweenMachines() throws Exception {
    TestSeed seed = TestSeed.fresh();
    long s = seed.value();
    int[] machines = {0, 1, 0, 1};
    int n = machines.length;
    everyRankPasses(seed, machines, t -> {
      int me = t.rank();
      for (int i = 0; i < 4; i++) {
        MemorySegment[] send = new MemorySegment[n];
        MemorySegment[] recv = new MemorySegment[n];
        for (int q = 0; q < n; q++) {
          long bytes = pairBytes(s, i, me, q) & ~7L;
          send[q] = wideHeap(me + q + i, bytes);
          fill(send[q], s, i, me, q);
          recv[q] = wideHeap(me * 3 + q + i, pairBytes(s, i, q, me) & ~7L);
        }
        t.sendRecv(send, recv);
        for (int p = 0; p < n; p++) {
          MemorySegment want = MemorySegment.ofArray(new byte[(int) recv[p].byteSize()]);
          fill(want, s, i, p, me);
          long at = recv[p].mismatch(want);
          assertEquals(-1, at, "round " + i + ": the " + want.byteSize() + " bytes from rank " + p + " differ at byte " + at);
        }
      }
      t.barrier();
    });
  }

  /**
   * A size mismatch (rank 3 expects a byte more from rank 0 than it sends), before and after the
   * links are open: every rank fails with the same message naming both, nothing is received, and
   * the next round works.
   */
  @Test
  void aSizeMismatchFailsEveryRankAlikeAndTheNextRoundWorks() throws Exception {
    int[] machines = {0, 1, 0, 1};
    int n = machines.length;
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      int me = t.rank();
      List<String> seen = new ArrayList<>();
      for (int i = 0; i < 4; i++) {
        boolean bad = i == 0 || i == 2;
        MemorySegment[] send = new MemorySegment[n];
        MemorySegment[] recv = new MemorySegment[n];
        for (int q = 0; q < n; q++) {
          byte[] b = new byte[100 + me * 10 + q];
          Arrays.fill(b, (byte) (me * 16 + q + i));
          send[q] = MemorySegment.ofArray(b);
          recv[q] = MemorySegment.ofArray(new byte[100 + q * 10 + me + (bad && me == 3 && q == 0 ? 1 : 0)]);
        }
        if (bad) {
          CollectiveException e = assertThrows(CollectiveException.class, () -> t.sendRecv(send, recv));
          seen.add(e.getMessage());
          for (MemorySegment r : recv) assertEquals(-1, r.mismatch(MemorySegment.ofArray(new byte[(int) r.byteSize()])), "bytes landed");
        } else {
          t.sendRecv(send, recv);
          for (int p = 0; p < n; p++) {
            byte[] want = new byte[100 + p * 10 + me];
            Arrays.fill(want, (byte) (p * 16 + me + i));
            assertArrayEquals(want, recv[p].toArray(ValueLayout.JAVA_BYTE), "round " + i + " from rank " + p);
          }
        }
      }
      t.barrier();
      return seen;
    });
    for (Object o : out) {
      assertEquals(List.of("sendRecv: rank 0 sends rank 3 103 bytes, rank 3 expects 104",
          "sendRecv: rank 0 sends rank 3 103 bytes, rank 3 expects 104"), o);
    }
  }

  /** A rank that never calls sendRecv is named on every other rank at about the timeout. */
  @Test
  void aRankThatNeverCallsSendRecvIsNamed() throws Exception {
    int[] machines = {0, 1, 0, 1};
    int n = machines.length;
    CountDownLatch done = new CountDownLatch(n - 1);
    List<Object> out = ranks(machines, SHORT, t -> {
      int me = t.rank();
      MemorySegment[] send = new MemorySegment[n];
      MemorySegment[] recv = new MemorySegment[n];
      for (int q = 0; q < n; q++) {
        send[q] = MemorySegment.ofArray(new byte[1000]);
        recv[q] = MemorySegment.ofArray(new byte[1000]);
      }
      t.sendRecv(send, recv); // the links are open
      if (me == 1) {
        assertTrue(done.await(20, TimeUnit.SECONDS), "the others never failed");
        return "missing";
      }
      long start = System.nanoTime();
      try {
        CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, () -> t.sendRecv(send, recv));
        return (System.nanoTime() - start) / 1_000_000 + " ms " + e.missingRanks() + ": " + e.getMessage();
      } finally {
        done.countDown();
      }
    });
    for (int r : new int[] {0, 2, 3}) {
      String m = assertInstanceOf(String.class, out.get(r), "rank " + r);
      assertTrue(m.contains(" ms [1]: "), "rank " + r + ": " + m);
      assertTrue(Long.parseLong(m.substring(0, m.indexOf(" ms"))) < 3_000, "rank " + r + ": " + m);
    }
  }

  /**
   * A rank whose part of the last sendRecv is done closes its transport while a peer of its
   * machine still reads a large message from the other machine: that peer's wait is not a wait
   * for the rank that left, so the round completes on every rank, every byte in place.
   */
  @Test
  void aRankThatClosesAfterItsPartOfTheLastSendRecvFailsNobody() throws Exception {
    int[] machines = {0, 0, 1};
    int n = machines.length;
    long big = 128L << 20;
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      int me = t.rank();
      MemorySegment[] send = new MemorySegment[n];
      MemorySegment[] recv = new MemorySegment[n];
      try (Arena a = Arena.ofConfined()) {
        if (me == 2) {
          send[1] = a.allocate(big);
          for (long i = 0; i < big; i += 4096) send[1].set(ValueLayout.JAVA_BYTE, i, (byte) (i / 4096));
        }
        if (me == 1) recv[2] = a.allocate(big);
        t.sendRecv(send, recv);
        if (me == 1) {
          for (long i = 0; i < big; i += 4096) assertEquals((byte) (i / 4096), recv[2].get(ValueLayout.JAVA_BYTE, i), "byte " + i);
        }
        return "ok"; // and closes at once: rank 0, which had nothing to move, first
      }
    });
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  /**
   * Ranks loop over sendRecv of a MiB to every peer across machines; rank 3 aborts (from another
   * thread, while its own thread may be mid-exchange) or leaves the loop and closes its transport.
   * The others fail well before the timeout, naming rank 3.
   */
  @ParameterizedTest
  @ValueSource(strings = {"abort", "close"})
  void aRankThatAbortsOrClosesMidLoopIsNamedAtOnce(String how) throws Exception {
    int[] machines = {0, 1, 0, 1};
    int n = machines.length;
    AtomicLong endedAt = new AtomicLong();
    List<Object> out = ranks(machines, Duration.ofSeconds(30), t -> {
      int me = t.rank();
      MemorySegment[] send = new MemorySegment[n];
      MemorySegment[] recv = new MemorySegment[n];
      try (Arena a = Arena.ofConfined()) {
        for (int q = 0; q < n; q++) {
          send[q] = a.allocate(1 << 20);
          recv[q] = a.allocate(1 << 20);
        }
        if (me == 3) {
          if (how.equals("abort")) {
            Thread aborter = new Thread(() -> {
              try {
                Thread.sleep(300);
              } catch (InterruptedException e) {
                return;
              }
              endedAt.set(System.nanoTime());
              t.abort(new IllegalStateException("rank 3 gives up"));
            });
            aborter.start();
            try {
              while (true) t.sendRecv(send, recv);
            } catch (CollectiveException e) {
              aborter.join();
              return "aborted";
            }
          }
          for (int i = 0; i < 5; i++) t.sendRecv(send, recv);
          endedAt.set(System.nanoTime());
          return "left"; // closes the transport
        }
        try {
          while (true) t.sendRecv(send, recv);
        } catch (CollectiveException e) {
          long millis = (System.nanoTime() - endedAt.get()) / 1_000_000;
          return millis + " ms " + e.getMessage();
        }
      }
    });
    for (int r = 0; r < 3; r++) {
      String m = assertInstanceOf(String.class, out.get(r), "rank " + r);
      assertTrue(m.contains("rank 3"), "rank " + r + ": " + m);
      assertTrue(Long.parseLong(m.substring(0, m.indexOf(" ms"))) < 5_000, "rank " + r + ": " + m + " (the timeout is 30 s)");
    }
  }

  /** Bytes from p to q in round i: random sizes, some empty (i == 1: nothing to the last rank). */
  private static byte[] pair(long seed, int round, int p, int q) {
    SplittableRandom rnd = new SplittableRandom(seed + round * 4099L + p * 64L + q);
    int len = round == 1 && q == 3 ? 0 : Math.max(0, rnd.nextInt(-300, 5000));
    byte[] b = new byte[len];
    rnd.nextBytes(b);
    return b;
  }

  /**
   * Machine 0's barrier waits for its slow rank; machine 1's ranks pass theirs while that rank has
   * not even arrived (it waits for them to pass first, so a barrier that waited for it would hang).
   */
  @Test
  void machineBarrierWaitsForItsMachineOnly() throws Exception {
    int[] machines = {0, 0, 1, 1};
    CountDownLatch machine1Passed = new CountDownLatch(2);
    AtomicBoolean slowArrived = new AtomicBoolean();
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      int me = t.rank();
      for (int round = 0; round < 3; round++) {
        if (me == 1) {
          if (round == 0) assertTrue(machine1Passed.await(8, TimeUnit.SECONDS), "machine 1's barrier waited for rank 1");
          slowArrived.set(true);
        }
        t.machineBarrier();
        if (me == 0) assertTrue(slowArrived.get(), "rank 0's machine barrier returned before rank 1 arrived");
        if (me >= 2 && round == 0) machine1Passed.countDown();
      }
      t.barrier();
      return "ok";
    });
    assertEquals(List.of("ok", "ok", "ok", "ok"), out);
  }

  /**
   * A non-leader of machine 1 aborts while machine 0's ranks wait: in their own machine's round
   * ({@code blockedAt} "machine", its other rank not there yet) or past it, at the leaders' round
   * and the hand-over ("leaders"). They fail well before the timeout, naming rank 3 and its reason.
   */
  @ParameterizedTest
  @ValueSource(strings = {"machine", "leaders"})
  void anAbortOnOneMachineReachesTheOtherAtOnce(String blockedAt) throws Exception {
    int[] machines = {0, 1, 0, 1};
    AtomicLong abortedAt = new AtomicLong();
    CountDownLatch failed = new CountDownLatch(1);
    List<Object> out = ranks(machines, TIMEOUT, t -> {
      int me = t.rank();
      if (me == 3) {
        Thread.sleep(300); // the others are waiting by now
        abortedAt.set(System.nanoTime());
        t.abort(new IllegalStateException("rank 3 gives up"));
        return "aborted";
      }
      if (me == 2 && blockedAt.equals("machine")) {
        assertTrue(failed.await(20, TimeUnit.SECONDS), "rank 0 never failed");
      }
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(me));
      long millis = (System.nanoTime() - abortedAt.get()) / 1_000_000;
      if (me == 0) failed.countDown();
      CollectiveException again = assertThrows(CollectiveException.class, t::barrier); // final
      assertTrue(again.getMessage().contains("rank 3"), again.getMessage());
      return millis + " ms: " + e.getMessage();
    });
    for (int r : new int[] {0, 1, 2}) {
      String m = assertInstanceOf(String.class, out.get(r));
      assertTrue(m.contains("world aborted by rank 3") && m.contains("rank 3 gives up"), "rank " + r + ": " + m);
      if (r == 2 && blockedAt.equals("machine")) continue; // it came after the failure
      long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
      assertTrue(millis < 5_000, "rank " + r + " took " + m + " (the timeout is 10 s)");
    }
  }

  /**
   * A machine that comes late as a whole (its leader more than a third of a timeout after the
   * first, then waiting for a rank of its own that never comes) is named by the store, through
   * its leader, at the timeout, and the message names the machine's ranks, so that the late one
   * is among them.
   */
  @Test
  void aLateMachineIsNamedThroughItsLeaderWithItsRanks() throws Exception {
    int[] machines = {0, 0, 1, 1};
    Duration timeout = Duration.ofMillis(1500);
    CountDownLatch done = new CountDownLatch(3);
    List<Object> out = ranks(machines, timeout, t -> {
      int me = t.rank();
      t.barrier();
      if (me == 3) {
        assertTrue(done.await(20, TimeUnit.SECONDS), "the others never failed");
        return "missing";
      }
      if (me == 2) Thread.sleep(900); // past a third of the timeout: its machine would name rank 3 at 900 + 1000 ms
      try {
        return assertThrows(CollectiveTimeoutException.class, () -> t.allGather(me)).getMessage();
      } finally {
        done.countDown();
      }
    });
    for (int r = 0; r < 3; r++) {
      String m = assertInstanceOf(String.class, out.get(r), "rank " + r);
      assertTrue(m.contains("rank(s) [2] did not reach round") && m.contains("rank 2 leads machine 1 (ranks [2, 3])"),
          "rank " + r + ": " + m);
    }
  }

  /**
   * A rank that never arrives is named (its world rank) on every other rank, of its machine and of
   * the others, within about the timeout: a non-leader (3), a leader with a peer on its machine
   * (1), a non-leader of rank 0's machine (2), and a machine's only rank (5, named by the store).
   */
  @ParameterizedTest
  @ValueSource(ints = {3, 1, 2, 5})
  void aMissingRankIsNamedEverywhere(int missing) throws Exception {
    int[] machines = {0, 1, 0, 1, 0, 2};
    CountDownLatch done = new CountDownLatch(machines.length - 1);
    List<Object> out = ranks(machines, SHORT, t -> {
      int me = t.rank();
      t.barrier();
      if (me == missing) {
        assertTrue(done.await(20, TimeUnit.SECONDS), "the others never failed");
        return "missing";
      }
      long start = System.nanoTime();
      try {
        CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, () -> t.allGather(new byte[me + 1]));
        return (System.nanoTime() - start) / 1_000_000 + " ms " + e.missingRanks() + ": " + e.getMessage();
      } finally {
        done.countDown();
      }
    });
    for (int r = 0; r < machines.length; r++) {
      if (r == missing) continue;
      String m = assertInstanceOf(String.class, out.get(r), "rank " + r);
      assertTrue(m.contains(" ms [" + missing + "]: ") && m.contains("rank(s) [" + missing + "] did not reach"), "rank " + r + ": " + m);
      long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
      // the timeout is 500 ms; a machine's only rank is named by the store at the timeout
      assertTrue(millis < 1_500, "rank " + r + " took " + m);
    }
  }

  /** A rank that cannot map its machine's block: every rank fails with one message naming it, with the hint. */
  @Test
  void aRankThatCannotMapItsMachinesBlockFailsEveryRankWithOneMessage() throws Exception {
    int[] machines = {0, 0, 1, 1};
    Path elsewhere = Files.createTempDirectory("moeyard-cluster-test");
    try {
      List<Object> out = ranks(machines, freePort(), TIMEOUT, r -> r == 3 ? elsewhere : ShmFiles.dir(), t -> "joined");
      String first = assertInstanceOf(CollectiveException.class, out.get(0)).getMessage();
      assertTrue(first.contains("rank 3 cannot map the control block") && first.contains("of machine 1 ('pretend-machine-1')")
          && first.contains("leader rank 2") && first.contains("NoSuchFileException")
          && first.contains("Ranks that report the same machine must share") && first.contains("look like one machine"), first);
      for (Object o : out) assertEquals(first, assertInstanceOf(CollectiveException.class, o).getMessage());
    } finally {
      try (var s = Files.list(elsewhere)) {
        assertEquals(List.of(), s.toList(), "nothing may be created where the rank could not map");
      }
      Files.delete(elsewhere);
    }
  }

  @Test
  void aRankWithoutAMachineNameFailsEveryRankNamingIt() throws Exception {
    for (Object o : joins(3, (rank, env) -> ClusterTransport.join(env, Map.of(), TIMEOUT, rank == 1 ? " " : machine(0)))) {
      String m = assertInstanceOf(CollectiveException.class, o).getMessage();
      assertEquals("rank 1 gave no machine name (null or blank) (every rank needs a machine name, as "
          + "ClusterTransport.thisMachine(), and a positive timeout)", m);
    }
  }

  @Test
  void mismatchedConfigurationsFailEveryRank() throws Exception {
    for (Object o : joins(3, (rank, env) -> ClusterTransport.join(env, Map.of("experts", rank == 2 ? "64" : "32"), TIMEOUT,
        machine(rank % 2)))) {
      String m = assertInstanceOf(RendezvousException.class, o).getMessage();
      assertTrue(m.contains("ranks disagree on the configuration: rank 2 has experts=64, rank 0 has experts=32"), m);
    }
  }

  /** A message of segments (null allowed). */
  static final MessageCodec<MemorySegment[]> SEGMENTS = new MessageCodec<>() {
    @Override
    public void write(MemorySegment[] s, MessageWriter out) {
      out.putInt(s.length);
      for (MemorySegment x : s) out.putSegment(x);
    }

    @Override
    public MemorySegment[] read(MessageReader in) {
      MemorySegment[] s = new MemorySegment[in.getInt()];
      for (int i = 0; i < s.length; i++) s[i] = in.getSegment();
      return s;
    }
  };

  /**
   * What a rank cannot do with peer memory fails every rank with one message naming it, and the
   * world goes on: a segment outside its peer memory in a message, a negative size.
   */
  @Test
  void misusesOfPeerMemoryFailEveryRankAndLeaveTheWorldUsable() throws Exception {
    List<Object> out = ranks(new int[] {0, 1, 1}, TIMEOUT, t -> {
      assertFalse(t.peerStores());
      assertFalse(t.sharesAddressSpace());
      try (Arena arena = Arena.ofConfined()) {
        assertFalse(t.reachable(arena.allocate(8)));
        MemorySegment[] s = {t.rank() == 2 ? arena.allocate(16) : null};
        CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(s, SEGMENTS));
        assertNull(((MemorySegment[]) t.allGather(new MemorySegment[] {null}, SEGMENTS)[(t.rank() + 1) % 3])[0]);
        CollectiveException neg = assertThrows(CollectiveException.class, () -> t.peerMemory(t.rank() == 1 ? -1 : 64));
        assertEquals("rank 1 asked for -1 bytes of peer memory (must be >= 0)", neg.getMessage());
        try (PeerMemory mem = t.peerMemory(64)) { // the world goes on
          MemorySegment own = mem.allocate(64, 8);
          assertTrue(t.reachable(own));
          assertFalse(t.reachable(arena.allocate(8)));
          t.barrier(); // nobody unmaps while a peer may still map
        }
        t.checkPeers();
        t.barrier(); // nobody leaves while another still checks its peers
        return e.getMessage();
      }
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.startsWith("rank 2: a segment of 16 bytes is not in this rank's peer memory, so no peer can reach it"), m);
    }
  }

  /** Rank p's pattern in round i: random bytes, some rounds empty for some ranks. */
  static byte[] pattern(long seed, int round, int rank) {
    SplittableRandom rnd = new SplittableRandom(seed * 131 + round * 65_537L + rank);
    byte[] b = new byte[rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(1, 6000)];
    rnd.nextBytes(b);
    return b;
  }

  /** What rank q stores into rank p's inbox in round i. */
  private static long note(long seed, int round, int q, int p) {
    return seed * 7 + round * 1_000_003L + q * 1009L + p + 1;
  }

  /**
   * Every rank carves peer memory (two regions a round, sizes differing by rank), writes its
   * pattern and publishes a segment of it plus an inbox (a long per rank) in an all-gather. A
   * segment of a rank of this machine resolves to exactly the bytes its owner wrote, and a note
   * this rank stores into its inbox is seen by the owner; another machine's segments resolve to
   * {@link MemorySegment#NULL}, which no access gets through. reaches and peerStores say the same;
   * the files are gone once the regions are made and nothing is left after close.
   */
  private void peerMemoryRounds(TestSeed seed, int[] machines, int rounds) throws Exception {
    int n = machines.length;
    int[] expectedMachine = firstAppearance(machines);
    int machineCount = Arrays.stream(expectedMachine).max().orElse(0) + 1;
    long s = seed.value();
    everyRankPasses(seed, machines, t -> {
      int me = t.rank();
      assertEquals(machineCount == 1, t.peerStores(), "peerStores on " + machineCount + " machine(s)");
      for (int p = 0; p < n; p++) {
        assertEquals(expectedMachine[p] == expectedMachine[me], t.reaches(p), "reaches(" + p + ")");
      }
      for (int i = 0; i < rounds; i++) {
        byte[] mine = pattern(s, i, me);
        long inboxBytes = (long) n * Long.BYTES;
        try (PeerMemory first = t.peerMemory(64 + me * 1000L); // a region of another size before: ids must still match
            PeerMemory mem = t.peerMemory(mine.length + inboxBytes + 128)) {
          t.barrier(); // every rank returned from peerMemory, so every rank unlinked its files
          String prefix = ShmFiles.PREFIX + t.job() + "-rank";
          List<Path> named = ShmFiles.list(ShmTransport.ownerPid()).stream()
              .filter(f -> f.getFileName().toString().startsWith(prefix)).toList();
          assertEquals(List.of(), named, "peer memory files still named after every rank mapped them");
          first.allocate(64, 64).fill((byte) 0x5a); // a store into the other region, which must not show below
          MemorySegment data = mem.allocate(mine.length, 1).copyFrom(MemorySegment.ofArray(mine));
          MemorySegment inbox = mem.allocate(inboxBytes, 8);
          assertTrue(t.reachable(data) && t.reachable(inbox));
          Object[] all = t.allGather(new MemorySegment[] {data, inbox}, SEGMENTS);
          for (int p = 0; p < n; p++) {
            MemorySegment[] got = (MemorySegment[]) all[p];
            if (p == me) continue;
            if (t.reaches(p)) {
              assertArrayEquals(pattern(s, i, p), got[0].toArray(ValueLayout.JAVA_BYTE), "round " + i + ": rank " + p + "'s bytes");
              assertEquals(inboxBytes, got[1].byteSize());
              got[1].setAtIndex(ValueLayout.JAVA_LONG, me, note(s, i, me, p));
            } else {
              assertEquals(MemorySegment.NULL, got[0], "round " + i + ": rank " + p + "'s segment, of another machine");
              assertEquals(MemorySegment.NULL, got[1], "round " + i + ": rank " + p + "'s inbox, of another machine");
              assertThrows(IndexOutOfBoundsException.class, () -> got[1].get(ValueLayout.JAVA_LONG, 0));
            }
          }
          t.machineBarrier(); // the stores of this machine's ranks are visible
          for (int q = 0; q < n; q++) {
            long want = q != me && t.reaches(q) ? note(s, i, q, me) : 0;
            assertEquals(want, inbox.getAtIndex(ValueLayout.JAVA_LONG, q), "round " + i + ": rank " + q + "'s note");
          }
          assertArrayEquals(mine, data.toArray(ValueLayout.JAVA_BYTE), "round " + i + ": my own bytes after the peers' stores");
          t.barrier(); // nobody unmaps while a peer still reads
        }
      }
      t.barrier();
    });
  }

  @Test
  void peerMemoryIsSharedWithinEachMachineOnRandomWorlds() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    peerMemoryRounds(seed, new int[] {1, 0, 1, 2, 0}, 2); // interleaved, names out of order
    peerMemoryRounds(new TestSeed(seed.value() + 1), new int[] {0, 0, 0}, 2); // one machine: like ShmTransport
    for (int w = 0; w < 4; w++) peerMemoryRounds(new TestSeed(seed.value() + 100 * (w + 1)), randomMachines(rnd, w), 2);
  }

  /**
   * Rank 3 looks for its machine's files in a directory of its own (with only a link to its
   * machine's control block, so it joins): the peers of its machine cannot map its peer memory,
   * nor it theirs ("map"), or it cannot even create its file ("create": the directory is gone).
   * Every rank of the world fails with one message naming the rank and the file; nothing is left
   * in either directory, and the world goes on.
   */
  @ParameterizedTest
  @ValueSource(strings = {"map", "create"})
  void aRankThatCannotCreateOrMapPeerMemoryFailsEveryRankWithOneMessage(String what) throws Exception {
    int port = freePort();
    String job = ShmFiles.job(ShmTransport.ownerPid(), port);
    Path elsewhere = Files.createTempDirectory("moeyard-cluster-test");
    Path link = ShmFiles.machineControl(elsewhere, job, 1);
    Files.createSymbolicLink(link, ShmFiles.machineControl(ShmFiles.dir(), job, 1));
    try {
      List<Object> out = ranks(new int[] {0, 1, 0, 1}, port, TIMEOUT, r -> r == 3 ? elsewhere : ShmFiles.dir(), t -> {
        assertEquals(job, t.job());
        if (t.rank() == 3 && what.equals("create")) {
          Files.delete(link);
          Files.delete(elsewhere);
        }
        CollectiveException e = assertThrows(CollectiveException.class, () -> t.peerMemory(1000));
        t.barrier(); // the world goes on
        return e.getMessage();
      });
      String first = assertInstanceOf(String.class, out.get(0));
      String want = what.equals("map")
          ? "rank 1 cannot map rank 3's " + ShmFiles.region(ShmFiles.dir(), job, 3, 0) + ": java.nio.file.NoSuchFileException"
          : "rank 3 cannot create " + ShmFiles.region(elsewhere, job, 3, 0) + " (4096 bytes of shared memory)";
      assertTrue(first.startsWith(want), first);
      for (Object o : out) assertEquals(first, o);
    } finally {
      if (Files.exists(elsewhere)) {
        Files.deleteIfExists(link);
        try (var s = Files.list(elsewhere)) {
          assertEquals(List.of(), s.toList(), "files left where rank 3 made its peer memory");
        }
        Files.delete(elsewhere);
      }
    }
  }

  /**
   * A message larger than the store carries (it can only go through the store, being too big for
   * a slot): every rank fails at once with one message naming the sender and the size, and the
   * world goes on, as with any refused message. Without the check only the sender failed, and its
   * peers waited at the store for it until the timeout.
   */
  @Test
  void aMessageTooBigForTheStoreFailsEveryRankAtOnceAndLeavesTheWorldUsable() throws Exception {
    List<Object> out = ranks(new int[] {0, 1, 1}, TIMEOUT, t -> {
      long start = System.nanoTime();
      byte[] mine = t.rank() == 2 ? new byte[ProcessWorld.MAX_BLOB] : new byte[] {(byte) t.rank()};
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(mine));
      long millis = (System.nanoTime() - start) / 1_000_000;
      assertTrue(millis < 5_000, "rank " + t.rank() + " failed after " + millis + " ms (the timeout is 10 s)");
      assertEquals(2L, t.allGather((long) t.rank())[2]);
      t.barrier();
      return e.getMessage();
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.startsWith("rank 2: ") && m.contains("exceeds the store's limit of " + ProcessWorld.MAX_BLOB), m);
    }
  }

  /** An abort reaches another machine's rank that is in no collective: its checkPeers throws it, polled. */
  @Test
  void checkPeersSeesAnAbortOfAnotherMachine() throws Exception {
    CountDownLatch aborted = new CountDownLatch(1);
    List<Object> out = ranks(new int[] {0, 0, 1}, TIMEOUT, t -> {
      t.barrier();
      if (t.rank() == 2) {
        t.abort(new IllegalStateException("rank 2 gives up"));
        aborted.countDown();
        return "aborted";
      }
      assertTrue(aborted.await(10, TimeUnit.SECONDS));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
      while (true) {
        try {
          t.checkPeers();
        } catch (CollectiveException e) {
          return e.getMessage();
        }
        assertTrue(System.nanoTime() < deadline, "checkPeers never saw the abort");
        Thread.sleep(5);
      }
    });
    for (int r : new int[] {0, 1}) {
      String m = assertInstanceOf(String.class, out.get(r));
      assertTrue(m.contains("world aborted by rank 2") && m.contains("rank 2 gives up"), m);
    }
  }

  /** After close: collectives and checks say so, and an abort (a late error handler's) is harmless. */
  @Test
  void aClosedTransportRefusesCollectivesAndAbortsQuietly() throws Exception {
    List<Object> out = ranks(new int[] {0, 1}, TIMEOUT, t -> {
      t.barrier();
      t.close();
      t.abort(new IllegalStateException("too late"));
      CollectiveException e = assertThrows(CollectiveException.class, t::barrier);
      assertThrows(CollectiveException.class, t::checkPeers);
      return e.getMessage();
    });
    for (int r = 0; r < 2; r++) assertEquals("rank " + r + ": the transport is closed", out.get(r));
  }

  /**
   * abort, aborted and checkPeers may come from any thread (a watchdog, an error handler), also
   * while the transport closes on another thread and after it closed: they answer (a boolean, a
   * CollectiveException) and never reach into the unmapped block (an IllegalStateException of a
   * closed arena).
   */
  @Test
  void callsFromAnyThreadWhileAndAfterItClosesNeverReachTheUnmappedBlock() throws Exception {
    List<Object> out = ranks(new int[] {0, 0, 1}, TIMEOUT, t -> {
      t.barrier();
      return CloseRace.run(pool, t, t::aborted, t);
    });
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  @Test
  void thisMachineIsTheHostAndItsBoot() throws Exception {
    String m = ClusterTransport.thisMachine();
    assertTrue(m.startsWith(java.net.InetAddress.getLocalHost().getHostName()), m);
    Path boot = Path.of("/proc/sys/kernel/random/boot_id");
    if (Files.exists(boot)) assertTrue(m.endsWith(" (boot " + Files.readString(boot).trim() + ")"), m);
  }
}
