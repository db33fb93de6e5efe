package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import java.lang.reflect.InvocationTargetException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * {@link NcclChannel} without NCCL: here (NCCL unavailable) it reports the probe's reason at once,
 * also without the bindings on the class path; with a stand-in for the NCCL calls, the grouped
 * exchange (one group, peers from the next rank on, empty entries skipped, the group closed also
 * after a failed call), the argument checks before any call, who destroys the communicator, and
 * the bounded waits of a non-blocking communicator (set-up, enqueue, finalization: polled until
 * done; a timeout, NCCL's error or the watch abort an own communicator, never an engine's).
 * The GPU side is {@link NcclChannelGpuTest}.
 */
class NcclChannelTest {
  private static final byte[] ID = new byte[NcclUniqueIds.BYTES];

  @Test
  void withoutNcclCreateAndWrapFailAtOnceWithTheProbesReason() {
    NcclAvailability a = NcclAvailability.get();
    if (a.available()) return; // NcclChannelGpuTest
    assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
      assertEquals(a.message(), assertThrows(CudaUnavailableException.class, () -> NcclChannel.create(ID, 1, 0)).getMessage());
      assertEquals(a.message(), assertThrows(CudaUnavailableException.class, () -> NcclChannel.wrap(0x1000, 1, 0)).getMessage());
    });
  }

  /** In a class loader with this module and the engine only, no bindings (as in the moeyard command): the probe's message, no linkage error. */
  @Test
  void withoutTheBindingsCreateSaysSo() throws Exception {
    if (NcclAvailability.get().binding() == NcclAvailability.Binding.MOEYARD) return; // libnccl.so.2 loads here: create would run
    URL classes = Path.of(NcclChannel.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toUri().toURL();
    URL engine = Path.of(CollectiveException.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toUri().toURL();
    try (URLClassLoader alone = new URLClassLoader(new URL[] {classes, engine}, ClassLoader.getPlatformClassLoader())) {
      Class<?> c = Class.forName(NcclChannel.class.getName(), true, alone);
      InvocationTargetException e = assertThrows(InvocationTargetException.class,
          () -> c.getMethod("create", byte[].class, int.class, int.class).invoke(null, ID, 1, 0));
      assertEquals(CudaUnavailableException.class.getName(), e.getCause().getClass().getName());
      String msg = e.getCause().getMessage();
      assertTrue(msg.startsWith(NcclAvailability.UNAVAILABLE) && msg.contains(NcclNative.SONAME), msg);
      assertTrue(msg.endsWith("; and NCCL's Java bindings (org.bytedeco:cuda, org.bytedeco.cuda.global.nccl) are not on the class path"), msg);
    }
  }

  @Test
  void badPlacesFailBeforeNccl() {
    Log log = new Log();
    assertEquals("the unique id has 5 bytes, NCCL's have 128",
        assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(new byte[5], 1, 0)).getMessage());
    assertEquals("ranks must be >= 1, got 0", assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(ID, 0, 0, log)).getMessage());
    assertEquals("rank 2 outside [0, 2)", assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(ID, 2, 2, log)).getMessage());
    assertEquals("ncclComm is 0", assertThrows(IllegalArgumentException.class, () -> NcclChannel.wrap(0, 1, 0)).getMessage());
    assertTrue(log.calls.isEmpty(), log.calls.toString());
    log.count = 3;
    assertEquals("the communicator has 3 ranks, not 4",
        assertThrows(IllegalArgumentException.class, () -> NcclChannel.wrap(0x77, 4, 0, log)).getMessage());
  }

  /** Rank 1 of 3: one group, peers 2, 0, 1 (itself), each send before its receive, empty entries skipped. */
  @Test
  void oneGroupPeersFromTheNextRankEmptyEntriesSkipped() {
    Log log = new Log();
    try (NcclChannel ch = NcclChannel.create(ID, 3, 1, log)) {
      assertEquals(List.of("init 3 1"), log.take());
      ch.exchange(new long[] {0x100, 0, 0x300}, new long[] {16, 0, 48}, new long[] {0xA00, 0xB00, 0}, new long[] {7, 9, 0}, 0x5);
      assertEquals(List.of("groupStart", "send 0x300 48 to 2 on 0x5", "send 0x100 16 to 0 on 0x5", "recv 0xa00 7 from 0 on 0x5",
          "recv 0xb00 9 from 1 on 0x5", "groupEnd"), log.take());
      ch.exchange(new long[3], new long[3], new long[3], new long[3], 0); // nothing to move: an empty group
      assertEquals(List.of("groupStart", "groupEnd"), log.take());
    }
    assertEquals(List.of("finalize 0xc0", "destroy 0xc0"), log.take());
  }

  @Test
  void badExchangeArgumentsFailBeforeAnyCall() {
    Log log = new Log();
    try (NcclChannel ch = NcclChannel.create(ID, 2, 0, log)) {
      log.take();
      long[] two = {0x100, 0x200};
      long[] sizes = {8, 8};
      assertEquals("send: 1 addresses and 2 sizes for 2 ranks",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(new long[1], sizes, two, sizes, 0)).getMessage());
      assertEquals("receive bytes for rank 1 is -3",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(two, sizes, two, new long[] {8, -3}, 0)).getMessage());
      assertEquals("send address for rank 0 is 0 (8 bytes)",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(new long[] {0, 0x200}, sizes, two, sizes, 0)).getMessage());
      assertTrue(log.calls.isEmpty(), log.calls.toString());
    }
  }

  /**
   * A failed send: the group is still closed, the failure names the call, nothing else is
   * enqueued; NCCL leaves the communicator of a failed group in error, so it is aborted and the
   * channel closed (a finalization would only fail).
   */
  @Test
  void aFailedCallStillClosesTheGroup() {
    Log log = new Log();
    log.failSendTo = 0;
    try (NcclChannel ch = NcclChannel.create(ID, 2, 1, log)) {
      log.take();
      CudaException e = assertThrows(CudaException.class,
          () -> ch.exchange(new long[] {0x10, 0x20}, new long[] {4, 4}, new long[] {0x30, 0x40}, new long[] {4, 4}, 0));
      assertEquals("ncclSend failed: stand-in", e.getMessage());
      assertEquals(List.of("groupStart", "groupEnd", "abort 0xc0"), log.take());
      assertThrows(IllegalStateException.class, () -> ch.exchange(new long[2], new long[2], new long[2], new long[2], 0));
    }
    assertEquals(List.of(), log.take(), "nothing left to finalize or destroy");
  }

  /** An engine's communicator in a failed group: the channel is closed, the communicator left to the engine. */
  @Test
  void aFailedGroupOnAnEnginesCommunicatorAbortsNothing() {
    Log log = new Log();
    log.count = 2;
    log.failSendTo = 0;
    NcclChannel ch = NcclChannel.wrap(0x99, 2, 1, log);
    assertThrows(CudaException.class,
        () -> ch.exchange(new long[] {0x10, 0x20}, new long[] {4, 4}, new long[] {0x30, 0x40}, new long[] {4, 4}, 0));
    assertThrows(IllegalStateException.class, () -> ch.exchange(new long[2], new long[2], new long[2], new long[2], 0));
    ch.close();
    assertEquals(List.of("count 0x99", "groupStart", "groupEnd"), log.take());
  }

  @Test
  void anEnginesCommunicatorIsNeverDestroyed() {
    Log log = new Log();
    log.count = 2;
    NcclChannel ch = NcclChannel.wrap(0x99, 2, 1, log);
    ch.close();
    ch.close();
    assertEquals(List.of("count 0x99"), log.take());
    assertThrows(IllegalStateException.class, () -> ch.exchange(new long[2], new long[2], new long[2], new long[2], 0));
    NcclChannel own = NcclChannel.create(ID, 1, 0, log);
    own.close();
    own.close();
    assertEquals(List.of("init 1 0", "finalize 0xc0", "destroy 0xc0"), log.take());
  }

  /** Set-up, enqueue and finalization that take a while are polled until done, nothing aborted. */
  @Test
  void callsInProgressArePolledUntilDone() {
    Log log = new Log();
    log.polls = 40; // past the spins, into the parks
    try (NcclChannel ch = NcclChannel.create(ID, 2, 1, Duration.ofSeconds(30), NcclChannel.NO_WATCH, log)) {
      assertEquals(41, log.readyCalls, "polled until ready");
      ch.exchange(new long[] {0x10, 0}, new long[] {4, 0}, new long[] {0x30, 0}, new long[] {4, 0}, 0);
      assertEquals(82, log.readyCalls);
    }
    assertEquals(123, log.readyCalls);
    assertEquals(List.of("init 2 1", "groupStart", "send 0x10 4 to 0 on 0x0", "recv 0x30 4 from 0 on 0x0", "groupEnd",
        "finalize 0xc0", "destroy 0xc0"), log.take());
  }

  /** A peer that never calls: the set-up ends at the timeout, the communicator aborted, nothing left to free. */
  @Test
  void aSetUpThatNeverFinishesIsAbortedAtTheTimeout() {
    Log log = new Log();
    log.polls = Integer.MAX_VALUE;
    long t0 = System.nanoTime();
    CollectiveTimeoutException e = assertTimeoutPreemptively(Duration.ofSeconds(10), () -> assertThrows(CollectiveTimeoutException.class,
        () -> NcclChannel.create(ID, 4, 3, Duration.ofMillis(300), NcclChannel.NO_WATCH, log)));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertTrue(ms >= 300, ms + " ms");
    assertEquals("rank 3 of 4: ncclCommInitRankConfig did not finish within 300 ms (a peer that never made its call, or NCCL"
        + " stuck on its network; NCCL cannot say which peer); the communicator was aborted", e.getMessage());
    assertEquals(List.of("init 4 3", "abort 0xc0"), log.take());
  }

  /** The world's watch throws (a peer died or gave up): the set-up stops within a watch period, aborted, and that error is thrown. */
  @Test
  void theWatchEndsTheSetUpAtOnce() {
    Log log = new Log();
    log.polls = Integer.MAX_VALUE;
    CollectiveException gone = new CollectiveTimeoutException("rank 2 (pid 7) died", List.of(2));
    int[] looks = {0};
    Runnable watch = () -> {
      if (++looks[0] == 3) throw gone;
    };
    long t0 = System.nanoTime();
    RuntimeException e = assertTimeoutPreemptively(Duration.ofSeconds(10), () -> assertThrows(RuntimeException.class,
        () -> NcclChannel.create(ID, 4, 0, Duration.ofSeconds(60), watch, log)));
    assertSame(gone, e);
    assertTrue((System.nanoTime() - t0) / 1_000_000 < 5_000, "stopped by the watch, not the timeout");
    assertEquals(List.of("init 4 0", "abort 0xc0"), log.take());
  }

  /** NCCL's asynchronous error: thrown as it is, the communicator aborted; an abort that fails too is suppressed on it. */
  @Test
  void anAsynchronousErrorAbortsTheCommunicator() {
    Log log = new Log();
    log.polls = 3;
    log.errorAfterPolls = true;
    CudaException e = assertThrows(CudaException.class, () -> NcclChannel.create(ID, 2, 0, log));
    assertEquals("ncclCommInitRankConfig failed: 6 (stand-in remote error)", e.getMessage());
    assertEquals(List.of("init 2 0", "abort 0xc0"), log.take());
    log.failAbort = true;
    e = assertThrows(CudaException.class, () -> NcclChannel.create(ID, 2, 0, log));
    assertEquals(1, e.getSuppressed().length);
    assertEquals("ncclCommAbort failed: stand-in", e.getSuppressed()[0].getMessage());
  }

  /** An enqueue that never finishes: an own communicator is aborted and the channel closed (close frees nothing more). */
  @Test
  void anEnqueueThatNeverFinishesClosesTheChannel() {
    Log log = new Log();
    NcclChannel ch = NcclChannel.create(ID, 2, 0, Duration.ofMillis(200), NcclChannel.NO_WATCH, log);
    log.polls = Integer.MAX_VALUE;
    long[] one = {0, 0x40};
    long[] four = {0, 4};
    CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, () -> ch.exchange(one, four, one, four, 0));
    assertTrue(e.getMessage().startsWith("rank 0 of 2: ncclGroupEnd did not finish within 200 ms"), e.getMessage());
    assertThrows(IllegalStateException.class, () -> ch.exchange(one, four, one, four, 0));
    ch.close();
    assertEquals(List.of("init 2 0", "groupStart", "send 0x40 4 to 1 on 0x0", "recv 0x40 4 from 1 on 0x0", "groupEnd", "abort 0xc0"),
        log.take());
  }

  /** An engine's communicator is waited for alike, but never aborted: it stays the engine's. */
  @Test
  void anEnginesCommunicatorIsNeverAborted() {
    Log log = new Log();
    log.count = 2;
    NcclChannel ch = NcclChannel.wrap(0x99, 2, 1, log);
    log.polls = Integer.MAX_VALUE;
    long[] none = new long[2];
    int[] looks = {0};
    CollectiveException stop = new CollectiveException("world aborted by rank 0: test");
    RuntimeException e = assertThrows(RuntimeException.class, () -> ch.exchange(none, none, none, none, 0, () -> {
      if (++looks[0] == 2) throw stop;
    }));
    assertSame(stop, e);
    ch.close();
    assertEquals(List.of("count 0x99", "groupStart", "groupEnd"), log.take());
  }

  /** A finalization that never finishes: aborted at the timeout, which close throws; nothing is destroyed after an abort. */
  @Test
  void aFinalizationThatNeverFinishesIsAborted() {
    Log log = new Log();
    NcclChannel ch = NcclChannel.create(ID, 2, 0, Duration.ofMillis(150), NcclChannel.NO_WATCH, log);
    log.polls = Integer.MAX_VALUE;
    CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, ch::close);
    assertTrue(e.getMessage().startsWith("rank 0 of 2: ncclCommFinalize did not finish within 150 ms"), e.getMessage());
    ch.close();
    assertEquals(List.of("init 2 0", "finalize 0xc0", "abort 0xc0"), log.take());
  }

  /** After a failed world: an own communicator is aborted, not finalized (no wait for peers), once; an engine's is left alone. */
  @Test
  void abandoningAbortsAnOwnCommunicatorOnly() {
    Log log = new Log();
    NcclDeviceChannel own = new NcclDeviceChannel(NcclChannel.create(ID, 2, 0, log), NcclChannel.NO_WATCH);
    own.abandon();
    own.abandon();
    own.close();
    assertEquals(List.of("init 2 0", "abort 0xc0"), log.take());
    log.count = 2;
    NcclDeviceChannel engines = NcclDeviceChannel.engines(NcclChannel.wrap(0x99, 2, 1, log), NcclChannel.NO_WATCH);
    engines.abandon();
    engines.close();
    assertEquals(List.of("count 0x99"), log.take());
  }

  /**
   * Between calls, a peer watch over a world that reports a dead peer aborts the leg's own
   * communicator (what releases a stream waiting in NCCL for that peer's message), once, and not
   * while a call is in progress; an engine's communicator is never aborted.
   */
  @Test
  void aPeerWatchAbortsTheLegsCommunicatorBetweenCallsOnly() throws Exception {
    Log log = new Log();
    NcclDeviceChannel own = new NcclDeviceChannel(NcclChannel.create(ID, 2, 0, log), NcclChannel.NO_WATCH);
    log.take();
    java.util.concurrent.atomic.AtomicBoolean dead = new java.util.concurrent.atomic.AtomicBoolean();
    try (PeerWatch w = new PeerWatch("test-nccl-watch", () -> {
      if (dead.get()) throw new CollectiveTimeoutException("rank 1 died", List.of(1));
    }, own::abandon, java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(5))) {
      w.enter(); // a call in progress when the peer dies
      dead.set(true);
      Thread.sleep(60);
      assertEquals(List.of(), List.copyOf(log.calls), "nothing aborted during the call");
      w.exit();
      long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
      while (w.seen() == null && System.nanoTime() < deadline) Thread.sleep(5);
    }
    assertEquals(List.of("abort 0xc0"), log.take());
    own.close();
    assertEquals(List.of(), log.take());
    log.count = 2;
    NcclDeviceChannel engines = NcclDeviceChannel.engines(NcclChannel.wrap(0x99, 2, 1, log), NcclChannel.NO_WATCH);
    log.take();
    try (PeerWatch w = new PeerWatch("test-nccl-watch", () -> {
      throw new CollectiveTimeoutException("rank 0 died", List.of(0));
    }, engines::abandon, java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(5))) {
      long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
      while (w.seen() == null && System.nanoTime() < deadline) Thread.sleep(5);
    }
    assertEquals(List.of(), log.take());
  }

  @Test
  void aTimeoutMustBePositive() {
    assertEquals("timeout must be positive, got PT0S",
        assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(ID, 1, 0, Duration.ZERO, NcclChannel.NO_WATCH, new Log()))
            .getMessage());
  }

  /**
   * A stand-in that records the calls. Set-up, groupEnd and finalize leave the communicator in
   * progress for {@code polls} polls of commReady (then done, or NCCL's error when
   * {@code errorAfterPolls}).
   */
  static final class Log implements NcclChannel.Nccl {
    final List<String> calls = new ArrayList<>();
    int count;
    int failSendTo = -1;
    int polls;
    boolean errorAfterPolls;
    boolean failAbort;
    int readyCalls;
    private int left;
    private String last;

    List<String> take() {
      List<String> c = List.copyOf(calls);
      calls.clear();
      return c;
    }

    @Override
    public long commInitRank(byte[] uniqueId, int ranks, int rank) {
      calls.add("init " + ranks + " " + rank);
      started("ncclCommInitRankConfig");
      return 0xC0;
    }

    private void started(String call) {
      left = polls;
      last = call;
    }

    @Override
    public boolean commReady(long comm, String call) {
      readyCalls++;
      if (left > 0) {
        if (left != Integer.MAX_VALUE) left--;
        return false;
      }
      if (errorAfterPolls) throw new CudaException(call + " failed: 6 (stand-in remote error)");
      assertEquals(last, call, "the call waited for");
      return true;
    }

    @Override
    public void commFinalize(long comm) {
      calls.add("finalize 0x" + Long.toHexString(comm));
      started("ncclCommFinalize");
    }

    @Override
    public void commAbort(long comm) {
      calls.add("abort 0x" + Long.toHexString(comm));
      if (failAbort) throw new CudaException("ncclCommAbort failed: stand-in");
    }

    @Override
    public int commCount(long comm) {
      calls.add("count 0x" + Long.toHexString(comm));
      return count;
    }

    @Override
    public void commDestroy(long comm) {
      calls.add("destroy 0x" + Long.toHexString(comm));
    }

    @Override
    public void groupStart() {
      calls.add("groupStart");
    }

    @Override
    public void groupEnd() {
      calls.add("groupEnd");
      started("ncclGroupEnd");
    }

    @Override
    public void send(long address, long bytes, int peer, long comm, long stream) {
      if (peer == failSendTo) throw new CudaException("ncclSend failed: stand-in");
      calls.add("send 0x" + Long.toHexString(address) + " " + bytes + " to " + peer + " on 0x" + Long.toHexString(stream));
    }

    @Override
    public void recv(long address, long bytes, int peer, long comm, long stream) {
      calls.add("recv 0x" + Long.toHexString(address) + " " + bytes + " from " + peer + " on 0x" + Long.toHexString(stream));
    }
  }
}
