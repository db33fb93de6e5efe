package io.moeyard.engine.transport;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import java.util.ArrayList;
import java.util.List;

/**
 * The in-JVM meeting point behind {@link Transport#allGather}: a generation-counted barrier that
 * also carries one value per rank. On timeout it names the ranks that never arrived and aborts
 * the world, so that one dead rank fails everybody with the same explanation instead of hanging.
 *
 * <p>Two contribution arrays alternate between generations: a rank that leaves generation g can
 * only write into generation g + 1, whose array is not the one its peers are still reading.
 */
final class Rendezvous {
  private final int size;
  private final long timeoutNanos;
  private final Object[][] slots;
  private final long[] arrivedAt;
  private long generation;
  private int arrived;
  private String abortReason;
  private Throwable abortCause;

  Rendezvous(int size, long timeoutNanos) {
    this.size = size;
    this.timeoutNanos = timeoutNanos;
    this.slots = new Object[][] {new Object[size], new Object[size]};
    this.arrivedAt = new long[size];
  }

  synchronized Object[] allGather(int rank, Object mine) {
    checkAborted();
    long gen = generation;
    Object[] current = slots[(int) (gen & 1)];
    current[rank] = mine;
    arrivedAt[rank] = gen + 1;
    if (++arrived == size) {
      arrived = 0;
      generation++;
      notifyAll();
      return current.clone();
    }
    long deadline = System.nanoTime() + timeoutNanos;
    while (generation == gen && abortReason == null) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        List<Integer> missing = new ArrayList<>();
        for (int r = 0; r < size; r++) if (arrivedAt[r] <= gen) missing.add(r);
        String msg = "rank(s) " + missing + " did not reach the collective within "
            + (timeoutNanos / 1_000_000) + " ms (rank " + rank + " waited)";
        CollectiveTimeoutException e = new CollectiveTimeoutException(msg, missing);
        abort(msg, e);
        throw e;
      }
      try {
        wait(Math.max(1, left / 1_000_000), 0);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        CollectiveException e = new CollectiveException("rank " + rank + " was interrupted in a collective", ie);
        abort(e.getMessage(), e);
        throw e;
      }
    }
    if (generation == gen) checkAborted();
    return current.clone();
  }

  synchronized void abort(String reason, Throwable cause) {
    if (abortReason == null) {
      abortReason = reason;
      abortCause = cause;
    }
    notifyAll();
  }

  synchronized boolean aborted() {
    return abortReason != null;
  }

  private void checkAborted() {
    if (abortReason != null) {
      if (abortCause instanceof CollectiveTimeoutException t) {
        throw new CollectiveTimeoutException("world aborted: " + abortReason, t.missingRanks());
      }
      throw new CollectiveException("world aborted: " + abortReason, abortCause);
    }
  }
}
