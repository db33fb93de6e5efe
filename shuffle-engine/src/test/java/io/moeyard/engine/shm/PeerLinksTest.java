package io.moeyard.engine.shm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BiFunction;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link PeerLinks} alone, ranks as threads meeting through an all-gather of this JVM, so that a
 * test can stand between a rank and the addresses it is given: a stray connection at a rank's
 * port is refused and the real links still form; an address nobody listens on fails every rank
 * with one message naming the rank that could not connect and the address it tried; a wait for a
 * silent peer ends at the timeout naming it, for a peer whose connection ends at once, and with
 * the world's failure as soon as the world check throws it.
 */
@Timeout(60)
class PeerLinksTest {
  private static final long TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(10);
  private static final long TOKEN = 0x5EED_1234L;
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void stop() throws InterruptedException {
    pool.shutdownNow();
    assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "a rank thread is still running");
  }

  /** An all-gather of plain values among {@code n} threads. */
  private static final class Gather {
    private final CyclicBarrier barrier;
    private final Object[] slots;

    Gather(int n) {
      barrier = new CyclicBarrier(n);
      slots = new Object[n];
    }

    Object[] apply(int rank, Object mine) {
      try {
        slots[rank] = mine;
        barrier.await(20, TimeUnit.SECONDS);
        Object[] all = slots.clone();
        barrier.await(20, TimeUnit.SECONDS);
        return all;
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }
  }

  interface Body {
    Object run(int rank, PeerLinks links, Function<Object, Object[]> gather) throws Exception;
  }

  /** {@code n} ranks' links, rank r's gathers passed through {@code through.apply(r, ...)}. */
  private List<Object> ranks(int n, BiFunction<Integer, Object[], Object[]> through, Body body) throws Exception {
    return ranks(n, TIMEOUT_NANOS, () -> {}, through, body);
  }

  /** As above, with the links' {@code timeoutNanos} and every rank's {@code checkWorld}. */
  private List<Object> ranks(int n, long timeoutNanos, Runnable checkWorld, BiFunction<Integer, Object[], Object[]> through,
      Body body) throws Exception {
    Gather g = new Gather(n);
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        try (PeerLinks links = new PeerLinks(rank, n, TOKEN, timeoutNanos, checkWorld)) {
          return body.run(rank, links, v -> through.apply(rank, g.apply(rank, v)));
        } catch (CollectiveException e) {
          return e;
        }
      }));
    }
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : fs) out.add(f.get(40, TimeUnit.SECONDS));
    return out;
  }

  private static boolean[][] allPairs(int n) {
    boolean[][] want = new boolean[n][n];
    for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) want[p][q] = true;
    return want;
  }

  /** Rank 0, on seeing the addresses, knocks at rank 2's port first with a wrong job, then with a short hello. */
  @Test
  void aStrayConnectionIsRefusedAndTheLinksStillForm() throws Exception {
    int n = 3;
    List<Socket> strays = new ArrayList<>();
    boolean[] knocked = new boolean[1];
    List<Object> out = ranks(n, (rank, all) -> {
      if (rank == 0 && !knocked[0] && all[2] instanceof String s && s.contains(" ")) {
        knocked[0] = true;
        try {
          int cut = s.lastIndexOf(' ');
          Socket wrongJob = new Socket(s.substring(0, cut), Integer.parseInt(s.substring(cut + 1)));
          OutputStream o = wrongJob.getOutputStream();
          o.write(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}); // another job's token, "rank 0"
          o.flush();
          Socket shortHello = new Socket(s.substring(0, cut), Integer.parseInt(s.substring(cut + 1)));
          shortHello.getOutputStream().write(new byte[] {9});
          shortHello.close();
          strays.add(wrongJob);
        } catch (IOException e) {
          throw new IllegalStateException(e);
        }
      }
      return all;
    }, (me, links, gather) -> {
      return connectAndGreet(n, me, links, gather);
    });
    for (Socket s : strays) s.close();
    assertTrue(knocked[0], "the strays never knocked");
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  /**
   * Rank 0, on seeing the addresses, opens a connection to rank 2's port that says nothing and
   * stays open (a port scanner, a health check): rank 2 must not wait on it for the peers' hellos
   * behind it, and the links form well within the timeout.
   */
  @Test
  void aSilentStrayConnectionDoesNotHoldUpTheRealOnes() throws Exception {
    int n = 3;
    long timeout = TimeUnit.SECONDS.toNanos(3);
    List<Socket> strays = new ArrayList<>();
    boolean[] knocked = new boolean[1];
    long start = System.nanoTime();
    List<Object> out = ranks(n, timeout, () -> {}, (rank, all) -> {
      if (rank == 0 && !knocked[0] && all[2] instanceof String s && s.contains(" ")) {
        knocked[0] = true;
        try {
          int cut = s.lastIndexOf(' ');
          strays.add(new Socket(s.substring(0, cut), Integer.parseInt(s.substring(cut + 1))));
        } catch (IOException e) {
          throw new IllegalStateException(e);
        }
      }
      return all;
    }, (me, links, gather) -> {
      return connectAndGreet(n, me, links, gather);
    });
    long millis = (System.nanoTime() - start) / 1_000_000;
    for (Socket s : strays) s.close();
    assertTrue(knocked[0], "the stray never knocked");
    assertEquals(List.of("ok", "ok", "ok"), out);
    assertTrue(millis < 2_000, "the links took " + millis + " ms: a silent stray held them up");
  }

  /** Rank 0 is given, for rank 2, an address where nobody listens: every rank fails with the one message naming rank 0 and that address. */
  @Test
  void aRankThatCannotConnectFailsEveryRankNamingItAndTheAddress() throws Exception {
    int n = 3;
    int closedPort;
    try (ServerSocket s = new ServerSocket(0)) {
      closedPort = s.getLocalPort();
    }
    String nowhere = "127.0.0.1 " + closedPort;
    boolean[] lied = new boolean[1];
    List<Object> out = ranks(n, (rank, all) -> {
      if (rank == 0 && !lied[0] && all[2] instanceof String s && s.contains(" ")) {
        lied[0] = true;
        Object[] changed = all.clone();
        changed[2] = nowhere;
        return changed;
      }
      return all;
    }, (me, links, gather) -> {
      links.connect(allPairs(n), InetAddress.getLoopbackAddress(), gather);
      return "connected";
    });
    String first = null;
    for (int r = 0; r < n; r++) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, out.get(r), "rank " + r);
      if (first == null) first = e.getMessage();
      assertEquals(first, e.getMessage(), "rank " + r + " failed otherwise");
    }
    assertTrue(first.startsWith("rank 0 could not connect its link to rank 2 at 127.0.0.1:" + closedPort + ": "), first);
  }

  /**
   * Rank 1 publishes an address of its interface (192.0.2.7 here, as every rank sees it) while
   * ranks 0 and 2 publish loopback ones (on their machine MASTER_ADDR resolved to localhost, or to
   * a host name that /etc/hosts maps to 127.0.1.1): nobody tries a connection that cannot work
   * across machines, and every rank fails at once with one message naming the loopback ranks,
   * their address and what to set.
   */
  @Test
  void aLoopbackAddressAmongOthersFailsEveryRankNamingItAndMasterAddr() throws Exception {
    int n = 3;
    boolean[] seen = new boolean[n];
    long start = System.nanoTime();
    List<Object> out = ranks(n, (rank, all) -> {
      if (seen[rank]) return all;
      seen[rank] = true;
      Object[] changed = all.clone();
      String s = (String) all[1];
      changed[1] = "192.0.2.7" + s.substring(s.lastIndexOf(' '));
      return changed;
    }, (me, links, gather) -> {
      links.connect(allPairs(n), InetAddress.getLoopbackAddress(), gather);
      return "connected";
    });
    long millis = (System.nanoTime() - start) / 1_000_000;
    String first = null;
    for (int r = 0; r < n; r++) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, out.get(r), "rank " + r);
      if (first == null) first = e.getMessage();
      assertEquals(first, e.getMessage(), "rank " + r + " failed otherwise");
    }
    assertTrue(first.startsWith("rank(s) [0, 2] listen for their links on a loopback address ("
        + InetAddress.getLoopbackAddress().getHostAddress() + "), which rank(s) [1] cannot reach from another machine"), first);
    assertTrue(first.contains("MASTER_ADDR"), first);
    assertTrue(millis < 2_000, "took " + millis + " ms: a connect was tried");
  }

  /**
   * Rank 0 is given, for rank 2, an address that never answers (a listener whose backlog is full
   * drops the connection's SYNs, as a firewall does). The others wait for its verdict in a gather
   * that, as a machine's block does ({@link ClusterTransport#MACHINE_WAIT}), gives up on a late
   * rank at two thirds of the timeout: rank 0 must give up its connect before that, so that every
   * rank fails with its message naming rank 0 and the address, not with a late rank 0.
   */
  @Test
  void aConnectThatNeverAnswersIsGivenUpBeforeThePeersStopWaiting() throws Exception {
    int n = 3;
    long timeout = TimeUnit.SECONDS.toNanos(3);
    long machineWaitMillis = (long) (timeout * ClusterTransport.MACHINE_WAIT) / 1_000_000;
    try (Deaf full = Deaf.open()) {
      String deaf = "127.0.0.1 " + full.port();
      CyclicBarrier[] late = {new CyclicBarrier(n)};
      boolean[] lied = new boolean[1];
      List<Object> out = ranks(n, timeout, () -> {}, (rank, all) -> {
        if (rank == 0 && !lied[0] && all[2] instanceof String s && s.contains(" ")) {
          lied[0] = true;
          Object[] changed = all.clone();
          changed[2] = deaf;
          return changed;
        }
        return all;
      }, (me, links, gather) -> {
        // the gather after the connects (the second), bounded as a machine's block bounds its wait
        int[] calls = {0};
        Function<Object, Object[]> bounded = v -> {
          if (++calls[0] == 2) {
            try {
              late[0].await(machineWaitMillis, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
              throw new CollectiveException("rank " + me + ": a peer did not reach the gather within " + machineWaitMillis + " ms");
            }
          }
          return gather.apply(v);
        };
        links.connect(allPairs(n), InetAddress.getLoopbackAddress(), bounded);
        return "connected";
      });
      for (int r = 0; r < n; r++) {
        CollectiveException e = assertInstanceOf(CollectiveException.class, out.get(r), "rank " + r);
        assertTrue(e.getMessage().startsWith("rank 0 could not connect its link to rank 2 at " + "127.0.0.1:" + full.port()),
            "rank " + r + ": " + e.getMessage());
      }
    }
  }

  /**
   * Rank 0 is given, for rank 1, an address that never answers (a full backlog), and the world
   * fails 300 ms into its connect (its check of the world throws): rank 0 ends with the world's
   * failure at once, not at a third of the timeout (5 s) with its connect's.
   */
  @Test
  void aConnectThatNeverAnswersEndsWithTheWorldsFailure() throws Exception {
    int n = 2;
    long timeout = TimeUnit.SECONDS.toNanos(15);
    AtomicBoolean worldFailed = new AtomicBoolean();
    CountDownLatch rank0Done = new CountDownLatch(1);
    try (Deaf full = Deaf.open()) {
      String deaf = "127.0.0.1 " + full.port();
      boolean[] lied = new boolean[1];
      List<Object> out = ranks(n, timeout, () -> {
        if (worldFailed.get()) throw new CollectiveException("the world failed");
      }, (rank, all) -> {
        if (rank == 0 && !lied[0]) {
          lied[0] = true;
          Object[] changed = all.clone();
          changed[1] = deaf;
          return changed;
        }
        return all;
      }, (me, links, gather) -> {
        int[] calls = {0};
        Function<Object, Object[]> first = v -> {
          if (++calls[0] == 1) return gather.apply(v);
          if (me == 1) {
            try {
              assertTrue(rank0Done.await(20, TimeUnit.SECONDS), "rank 0 never ended");
            } catch (InterruptedException e) {
              throw new IllegalStateException(e);
            }
            throw new CollectiveException("rank 1: rank 0 never came to the gather");
          }
          throw new CollectiveException("rank 0 came to the gather");
        };
        if (me == 1) {
          links.connect(allPairs(n), InetAddress.getLoopbackAddress(), first);
          return "connected";
        }
        pool.submit(() -> {
          Thread.sleep(300);
          worldFailed.set(true);
          return null;
        });
        long start = System.nanoTime();
        try {
          links.connect(allPairs(n), InetAddress.getLoopbackAddress(), first);
          return "connected";
        } catch (CollectiveException e) {
          return (System.nanoTime() - start) / 1_000_000 + " ms " + e.getMessage();
        } finally {
          rank0Done.countDown();
        }
      });
      String m = (String) out.get(0);
      long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
      assertTrue(m.endsWith(" ms the world failed"), m);
      assertTrue(millis < 2_000, m);
    }
  }

  /**
   * Rank 1 waits for 1000 bytes from rank 0, which sends nothing ("silent"), closes its links
   * ("closes"), or stays while the world fails ("world": rank 1's check of the world throws): rank
   * 1 names rank 0 at half the timeout (300 ms of 600), at once, or ends with the world's failure at once.
   */
  @ParameterizedTest
  @ValueSource(strings = {"silent", "closes", "world"})
  void aWaitForAPeerEndsNamingItOrWithTheWorld(String how) throws Exception {
    long timeout = TimeUnit.MILLISECONDS.toNanos(600);
    AtomicBoolean worldFailed = new AtomicBoolean();
    CountDownLatch done = new CountDownLatch(1);
    List<Object> out = ranks(2, how.equals("silent") ? timeout : TIMEOUT_NANOS, () -> {
      if (worldFailed.get()) throw new CollectiveException("the world failed");
    }, (rank, all) -> all, (me, links, gather) -> {
      links.connect(allPairs(2), InetAddress.getLoopbackAddress(), gather);
      MemorySegment[] send = new MemorySegment[2];
      MemorySegment[] recv = new MemorySegment[2];
      if (me == 0) {
        Thread.sleep(200);
        if (how.equals("closes")) links.close();
        if (how.equals("world")) worldFailed.set(true);
        assertTrue(done.await(20, TimeUnit.SECONDS), "rank 1 never ended");
        return "rank 0";
      }
      recv[0] = MemorySegment.ofArray(new byte[1000]);
      long start = System.nanoTime();
      try {
        links.exchange(send, recv, new boolean[] {true, false});
        return "received";
      } catch (CollectiveException e) {
        return (System.nanoTime() - start) / 1_000_000 + " ms " + e.getClass().getSimpleName() + ": " + e.getMessage();
      } finally {
        done.countDown();
      }
    });
    String m = (String) out.get(1);
    long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
    switch (how) {
      case "silent" -> {
        assertTrue(m.contains("CollectiveTimeoutException: rank(s) [0] sent nothing on their links to rank 1 within 300 ms"), m);
        assertTrue(millis >= 300 && millis < 3_000, m);
      }
      case "closes" -> {
        assertTrue(m.contains("CollectiveTimeoutException: rank 1: rank 0's link ended during sendRecv"), m);
        assertTrue(millis < 2_000, m);
      }
      default -> {
        assertTrue(m.contains("CollectiveException: the world failed"), m);
        assertTrue(millis < 2_000, m);
      }
    }
  }

  /**
   * Rank 1's thread is interrupted while it waits for rank 0, which sends nothing: the wait ends
   * at once naming the interrupt, with the thread's interrupt status kept, instead of running to
   * the timeout (10 s) with a selector that returns at once, a core busy all along.
   */
  @Test
  void anInterruptedWaitEndsAtOnceNamingTheInterrupt() throws Exception {
    CountDownLatch done = new CountDownLatch(1);
    List<Object> out = ranks(2, (rank, all) -> all, (me, links, gather) -> {
      links.connect(allPairs(2), InetAddress.getLoopbackAddress(), gather);
      if (me == 0) {
        assertTrue(done.await(20, TimeUnit.SECONDS), "rank 1 never ended");
        return "rank 0";
      }
      Thread.currentThread().interrupt();
      long start = System.nanoTime();
      try {
        links.exchange(new MemorySegment[2], new MemorySegment[] {MemorySegment.ofArray(new byte[1000]), null}, new boolean[] {true, false});
        return "received";
      } catch (CollectiveException e) {
        return (System.nanoTime() - start) / 1_000_000 + " ms " + Thread.interrupted() + " " + e.getMessage();
      } finally {
        done.countDown();
      }
    });
    String m = (String) out.get(1);
    long millis = Long.parseLong(m.substring(0, m.indexOf(" ms")));
    assertTrue(m.contains(" ms true rank 1 was interrupted during sendRecv"), m);
    assertTrue(millis < 2_000, m);
  }

  /** Links every pair of {@code n} ranks, then each rank sends every peer (its rank, the peer's) and checks what came back. */
  private static String connectAndGreet(int n, int me, PeerLinks links, Function<Object, Object[]> gather) {
    links.connect(allPairs(n), InetAddress.getLoopbackAddress(), gather);
    MemorySegment[] send = new MemorySegment[n];
    MemorySegment[] recv = new MemorySegment[n];
    boolean[] linked = new boolean[n];
    for (int q = 0; q < n; q++) {
      if (q == me) continue;
      send[q] = MemorySegment.ofArray(new byte[] {(byte) me, (byte) q});
      recv[q] = MemorySegment.ofArray(new byte[2]);
      linked[q] = true;
    }
    links.exchange(send, recv, linked);
    for (int p = 0; p < n; p++) {
      if (p != me) assertArrayEquals(new byte[] {(byte) p, (byte) me}, recv[p].toArray(ValueLayout.JAVA_BYTE), "from rank " + p);
    }
    return "ok";
  }

  /**
   * A listening port whose backlog is full (two connections made and never accepted), so that a
   * further connect is never answered: its SYNs are dropped, as a firewall does.
   */
  private record Deaf(ServerSocket server, List<Socket> fillers) implements AutoCloseable {
    static Deaf open() throws java.io.IOException {
      ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
      List<Socket> fillers = new ArrayList<>();
      try {
        for (int i = 0; i < 2; i++) {
          Socket f = new Socket();
          fillers.add(f);
          f.connect(server.getLocalSocketAddress(), 1000);
        }
      } catch (java.io.IOException | RuntimeException e) {
        for (Socket f : fillers) f.close();
        server.close();
        throw e;
      }
      return new Deaf(server, fillers);
    }

    int port() {
      return server.getLocalPort();
    }

    @Override
    public void close() throws java.io.IOException {
      for (Socket f : fillers) f.close();
      server.close();
    }
  }
}
