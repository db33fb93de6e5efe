package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.transport.Transport;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;

/**
 * The calls any thread may make on a shared-memory transport (a look at the abort word, a check of
 * the peers, now and then an abort: a watchdog's, a late error handler's), polled on another thread
 * while the rank closes its transport and for a while after. They may throw a
 * {@link CollectiveException} (a peer closed first, or this rank did); anything else (a closed
 * arena's IllegalStateException: unmapped memory reached) fails the rank.
 */
final class CloseRace {
  private CloseRace() {}

  /** Closes {@code t} (via {@code close}) under the poller; returns "ok", or throws what a poll threw. */
  static String run(ExecutorService pool, Transport t, BooleanSupplier aborted, AutoCloseable close) throws Exception {
    AtomicBoolean stop = new AtomicBoolean();
    AtomicLong polls = new AtomicLong();
    AtomicReference<Throwable> wrong = new AtomicReference<>();
    Future<?> poller = pool.submit(() -> {
      while (!stop.get()) {
        try {
          aborted.getAsBoolean();
          t.checkPeers();
        } catch (CollectiveException expected) {
          // a peer that closed first, or this rank's own close
        } catch (Throwable e) {
          wrong.compareAndSet(null, e);
        }
        try {
          if (polls.incrementAndGet() % 64 == 0) t.abort(new IllegalStateException("a late handler"));
        } catch (Throwable e) {
          wrong.compareAndSet(null, e);
        }
      }
    });
    while (polls.get() < 100) Thread.onSpinWait();
    close.close();
    long seen = polls.get();
    while (polls.get() < seen + 100) Thread.onSpinWait(); // it goes on after the close
    stop.set(true);
    poller.get(10, TimeUnit.SECONDS);
    if (wrong.get() != null) throw new AssertionError("rank " + t.rank() + ": a call during or after close threw", wrong.get());
    aborted.getAsBoolean();
    return "ok";
  }
}
