package io.moeyard.engine.transport;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;

/**
 * The in-JVM meeting point behind {@link Transport#allGather}: a generation-counted barrier that
 * also carries one value per rank. On timeout it names the ranks that never arrived and aborts
 * the world, so that one dead rank fails everybody with the same explanation instead of hanging.
 *
 * <p>Lock-free: a rank stores its value, then increments the arrival count; the last to arrive
 * resets the count, advances the generation and unparks the sleepers. Waiters back off in three
 * steps (spin, yield, park), Agrona's idle-strategy shape: a collective's barriers are microseconds
 * apart when ranks are balanced, and a monitor's wait/notify hand-off costs more than the work
 * between them; parking last keeps oversubscribed worlds (more ranks than cores) from starving
 * the ranks that still have work.
 *
 * <p>Two contribution arrays alternate between generations: a rank that leaves generation g can
 * only write into generation g + 1, whose array is not the one its peers are still reading.
 */
final class Rendezvous {
  private static final int SPINS = 256;
  private static final int YIELDS = 64;
  private static final long MIN_PARK_NANOS = 10_000;
  private static final long MAX_PARK_NANOS = 1_000_000;

  private final int size;
  private final long timeoutNanos;
  private final Object[][] slots;
  private final AtomicLongArray arrivedAt;
  private final AtomicReferenceArray<Thread> sleeping;
  /** Each rank's backoff, reset for every wait: a rank waits in one collective at a time. */
  private final Backoff[] backoffs;
  private final AtomicInteger arrived = new AtomicInteger();
  private volatile long generation;
  private volatile String abortReason;
  private volatile Throwable abortCause;

  Rendezvous(int size, long timeoutNanos) {
    this.size = size;
    this.timeoutNanos = timeoutNanos;
    this.slots = new Object[][] {new Object[size], new Object[size]};
    this.arrivedAt = new AtomicLongArray(size);
    this.sleeping = new AtomicReferenceArray<>(size);
    this.backoffs = new Backoff[size];
    for (int r = 0; r < size; r++) backoffs[r] = new Backoff(SPINS, YIELDS, MIN_PARK_NANOS, MAX_PARK_NANOS);
  }

  Object[] allGather(int rank, Object mine) {
    checkAborted();
    long gen = generation;
    Object[] current = slots[(int) (gen & 1)];
    current[rank] = mine;
    arrivedAt.set(rank, gen + 1);
    if (arrived.incrementAndGet() == size) {
      Object[] result = current.clone();
      arrived.set(0);
      generation = gen + 1;
      for (int r = 0; r < size; r++) {
        Thread t = sleeping.get(r);
        if (t != null) LockSupport.unpark(t);
      }
      return result;
    }
    awaitGeneration(rank, gen);
    return current.clone();
  }

  private void awaitGeneration(int rank, long gen) {
    long deadline = System.nanoTime() + timeoutNanos;
    Backoff backoff = backoffs[rank].reset();
    while (generation == gen) {
      if (abortReason != null) {
        if (generation != gen) return;
        checkAborted();
      }
      if (!backoff.parking()) {
        backoff.spinOrYield();
        continue;
      }
      long left = deadline - System.nanoTime();
      if (left <= 0) timeout(rank, gen);
      sleeping.set(rank, Thread.currentThread());
      if (generation == gen && abortReason == null) backoff.park(this, left);
      sleeping.set(rank, null);
      if (Thread.interrupted()) {
        CollectiveException e = new CollectiveException("rank " + rank + " was interrupted in a collective");
        abort(e.getMessage(), e);
        throw e;
      }
    }
  }

  private void timeout(int rank, long gen) {
    List<Integer> missing = new ArrayList<>();
    for (int r = 0; r < size; r++) if (arrivedAt.get(r) <= gen) missing.add(r);
    String msg = "rank(s) " + missing + " did not reach the collective within "
        + (timeoutNanos / 1_000_000) + " ms (rank " + rank + " waited)";
    CollectiveTimeoutException e = new CollectiveTimeoutException(msg, missing);
    abort(msg, e);
    throw e;
  }

  synchronized void abort(String reason, Throwable cause) {
    if (abortReason == null) {
      abortCause = cause;
      abortReason = reason;
    }
    for (int r = 0; r < size; r++) {
      Thread t = sleeping.get(r);
      if (t != null) LockSupport.unpark(t);
    }
  }

  boolean aborted() {
    return abortReason != null;
  }

  /** Throws the world's abort as a collective would (the same type and text); returns while it is healthy. */
  void checkAborted() {
    String reason = abortReason;
    if (reason != null) {
      Throwable cause = abortCause;
      if (cause instanceof CollectiveTimeoutException t) {
        throw new CollectiveTimeoutException("world aborted: " + reason, t.missingRanks());
      }
      throw new CollectiveException("world aborted: " + reason, cause);
    }
  }
}
