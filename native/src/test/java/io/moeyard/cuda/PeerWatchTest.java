package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveTimeoutException;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link PeerWatch} without a GPU: between calls it finds a peer's failure and ends the device's
 * waits once (here a stand-in for aborting NCCL's communicator), never while a call is in
 * progress, and its thread ends with it.
 */
@Timeout(30)
class PeerWatchTest {
  private static final long PERIOD = TimeUnit.MILLISECONDS.toNanos(5);

  @Test
  void aFailureBetweenCallsEndsTheDevicesWaitsOnce() throws Exception {
    AtomicBoolean peerGone = new AtomicBoolean();
    AtomicInteger aborts = new AtomicInteger();
    CountDownLatch aborted = new CountDownLatch(1);
    CollectiveTimeoutException gone = new CollectiveTimeoutException("rank 3 died", List.of(3));
    try (PeerWatch w = new PeerWatch("test-watch", () -> {
      if (peerGone.get()) throw gone;
    }, () -> {
      aborts.incrementAndGet();
      aborted.countDown();
    }, PERIOD)) {
      Thread.sleep(50);
      assertEquals(0, aborts.get(), "no failure, no abort");
      long t0 = System.nanoTime();
      peerGone.set(true);
      assertTrue(aborted.await(5, TimeUnit.SECONDS), "the watch never acted");
      assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(2));
      Thread.sleep(50);
      assertEquals(1, aborts.get(), "once");
      assertSame(gone, w.seen());
    }
  }

  @Test
  void itNeverChecksOrActsWhileACallIsInProgress() throws Exception {
    AtomicBoolean inCall = new AtomicBoolean();
    AtomicBoolean checkedDuringCall = new AtomicBoolean();
    AtomicInteger checks = new AtomicInteger();
    AtomicBoolean peerGone = new AtomicBoolean();
    AtomicInteger aborts = new AtomicInteger();
    try (PeerWatch w = new PeerWatch("test-watch", () -> {
      checks.incrementAndGet();
      if (inCall.get()) checkedDuringCall.set(true);
      if (peerGone.get()) throw new CollectiveTimeoutException("rank 1 died", List.of(1));
    }, aborts::incrementAndGet, PERIOD)) {
      for (int call = 0; call < 20; call++) {
        w.enter();
        inCall.set(true);
        if (call == 10) peerGone.set(true); // found only after this call
        Thread.sleep(10);
        inCall.set(false);
        w.exit();
        if (call < 10) Thread.sleep(2);
        else if (aborts.get() == 0) Thread.sleep(20);
      }
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
      while (aborts.get() == 0 && System.nanoTime() < deadline) Thread.sleep(5);
      assertFalse(checkedDuringCall.get(), "a check ran during a call");
      assertTrue(checks.get() > 0);
      assertEquals(1, aborts.get());
    }
  }

  @Test
  void closingEndsTheThreadWithoutActing() throws Exception {
    AtomicInteger aborts = new AtomicInteger();
    PeerWatch w = new PeerWatch("test-watch-close", () -> {}, aborts::incrementAndGet, TimeUnit.SECONDS.toNanos(60));
    long t0 = System.nanoTime();
    w.close(); // does not wait out the period
    assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
    assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("test-watch-close")));
    assertEquals(0, aborts.get());
    assertNull(w.seen());
  }
}
