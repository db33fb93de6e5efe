package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A rank process's wait for its own stream ({@link HostWait#until}, as {@link VirtualRanks#synchronize} uses it), without a device:
 * "done" stands in for the stream's query. It watches the peers through the transport every
 * period, ends at once with what the watch found, and still ends at the device timeout naming
 * the pending peers.
 */
@Timeout(20)
class StreamWaitHostTest {
  private static final long PERIOD = VirtualRanks.WATCH_NANOS;
  private static final long FAR = 30_000_000_000L;

  private static RuntimeException noStall() {
    throw new AssertionError("the deadline fired");
  }

  @Test
  void aStreamDoneAtOnceIsNotWatched() {
    AtomicInteger watched = new AtomicInteger();
    HostWait.until(() -> true, System.nanoTime() + FAR, PERIOD, watched::incrementAndGet, StreamWaitHostTest::noStall);
    assertEquals(0, watched.get());
  }

  @Test
  void pollsUntilDoneWatchingAtMostOncePerPeriod() {
    long start = System.nanoTime();
    long doneAt = start + 8 * PERIOD;
    List<Long> watches = new ArrayList<>();
    AtomicInteger polls = new AtomicInteger();
    HostWait.until(() -> {
      polls.incrementAndGet();
      return System.nanoTime() - doneAt >= 0;
    }, start + FAR, PERIOD, () -> watches.add(System.nanoTime()), StreamWaitHostTest::noStall);
    assertTrue(System.nanoTime() - doneAt >= 0);
    assertTrue(polls.get() > 1, "polled " + polls.get() + " times");
    assertFalse(watches.isEmpty(), "eight periods passed without a watch");
    assertTrue(watches.get(0) - start >= PERIOD, "the first watch came before one period");
    for (int i = 1; i < watches.size(); i++) {
      assertTrue(watches.get(i) - watches.get(i - 1) >= PERIOD, "watches " + (i - 1) + " and " + i + " less than a period apart");
    }
  }

  @Test
  void whatTheWatchThrowsEndsTheWaitWithinAPeriod() {
    long start = System.nanoTime();
    long failAt = start + 5 * PERIOD;
    CollectiveTimeoutException found = new CollectiveTimeoutException("rank 2 died", List.of(2));
    AtomicInteger polls = new AtomicInteger();
    AtomicInteger pollsAtThrow = new AtomicInteger(-1);
    CollectiveTimeoutException thrown = assertThrows(CollectiveTimeoutException.class, () -> HostWait.until(() -> {
      polls.incrementAndGet();
      return false;
    }, start + FAR, PERIOD, () -> {
      if (System.nanoTime() - failAt >= 0) {
        pollsAtThrow.set(polls.get());
        throw found;
      }
    }, StreamWaitHostTest::noStall));
    long late = System.nanoTime() - failAt;
    assertSame(found, thrown);
    assertEquals(pollsAtThrow.get(), polls.get(), "the stream was polled after the watch threw");
    // one period at most, plus room for a busy machine's scheduling; without the watch it would be the 30 s deadline
    assertTrue(late < PERIOD + 1_000_000_000L, "the wait ended " + late / 1_000_000 + " ms after the watch began to throw");
  }

  @Test
  void theDeviceTimeoutStillFiresNamingThePendingPeers() {
    long timeout = 150_000_000;
    long start = System.nanoTime();
    AtomicInteger watched = new AtomicInteger();
    CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, () -> HostWait.until(() -> false,
        start + timeout, PERIOD, watched::incrementAndGet, () -> VirtualRanks.stalled(1, timeout, List.of(0, 2))));
    assertTrue(System.nanoTime() - start >= timeout);
    assertTrue(watched.get() >= 1, "the peers were never watched");
    assertEquals(List.of(0, 2), e.missingRanks());
    assertTrue(e.getMessage().startsWith("rank 1: its stream did not finish within 150 ms; it waits for rank(s) [0, 2]"),
        e.getMessage());
  }

  /** An aborted world (threads' transport): the wait ends with the abort, wrapped, not as a timeout. */
  @Test
  void anAbortedWorldEndsTheWaitWithItsAbort() throws InterruptedException {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(3))) {
      Transport t = world.transport(0);
      VirtualRanks.watchPeers(t, 0); // healthy: nothing
      Thread aborter = Thread.ofPlatform().start(() -> {
        try {
          Thread.sleep(100);
        } catch (InterruptedException e) {
          return;
        }
        world.transport(1).abort(new IllegalStateException("bad shape 3"));
      });
      CollectiveException e = assertThrows(CollectiveException.class, () -> HostWait.until(() -> false,
          System.nanoTime() + FAR, PERIOD, () -> VirtualRanks.watchPeers(t, 0), StreamWaitHostTest::noStall));
      assertFalse(e instanceof CollectiveTimeoutException, e.getMessage());
      assertEquals("rank 0: its stream was waiting when the transport found the world failed: world aborted: rank 1 aborted: "
          + "java.lang.IllegalStateException: bad shape 3", e.getMessage());
      CollectiveException found = assertInstanceOf(CollectiveException.class, e.getCause());
      assertEquals(assertThrows(CollectiveException.class, t::barrier).getMessage(), found.getMessage());
      aborter.join();
    }
  }

  /** A peer found dead: a timeout naming it, and the world is aborted with it so that the others hear. */
  @Test
  void aDeadPeerEndsTheWaitNamingItAndAbortsTheWorld() {
    CollectiveTimeoutException found = new CollectiveTimeoutException("rank 2 (pid 7) died: its process is gone", List.of(2));
    AtomicInteger checks = new AtomicInteger();
    AtomicReference<Throwable> aborted = new AtomicReference<>();
    Transport t = new Transport() {
      @Override
      public int rank() {
        return 1;
      }

      @Override
      public int size() {
        return 3;
      }

      @Override
      public Topology topology() {
        return Topology.singleNode(3);
      }

      @Override
      public Object[] allGather(Object mine) {
        throw new AssertionError("not a collective");
      }

      @Override
      public void abort(Throwable cause) {
        aborted.compareAndSet(null, cause);
      }

      @Override
      public void checkPeers() {
        if (checks.incrementAndGet() == 3) throw found;
      }

      @Override
      public boolean peerStores() {
        return true;
      }
    };
    CollectiveTimeoutException e = assertThrows(CollectiveTimeoutException.class, () -> HostWait.until(() -> false,
        System.nanoTime() + FAR, PERIOD, () -> VirtualRanks.watchPeers(t, 1), StreamWaitHostTest::noStall));
    assertEquals(3, checks.get());
    assertEquals(List.of(2), e.missingRanks());
    assertEquals("rank 1: its stream was waiting when the transport found the world failed: " + found.getMessage(), e.getMessage());
    assertSame(found, e.getCause());
    assertSame(e, aborted.get());
  }
}
