package io.moeyard.engine.transport;

import java.util.concurrent.locks.LockSupport;

/**
 * How a rank waits for its peers in a collective: spin, then yield, then park for growing
 * intervals (the shape of Agrona's backoff idle strategy). Balanced ranks meet microseconds apart,
 * where a park's wake-up latency would dominate, so waiting starts hot; more ranks than cores
 * must not starve the ranks that still have work, so it ends parked. One instance per wait, or
 * one per waiter, {@link #reset} before each wait.
 *
 * <p>The caller's slow checks (deadline, peer liveness) belong in the park phase only, which is
 * why the phases are exposed rather than hidden behind one {@code idle()}.
 */
public final class Backoff {
  private final int spins;
  private final int yields;
  private final long minParkNanos;
  private final long maxParkNanos;
  private int idle;
  private long park;

  /**
   * {@code spins} busy spins, then {@code yields} yields, then parks of {@code minParkNanos}
   * doubling up to {@code maxParkNanos}.
   */
  public Backoff(int spins, int yields, long minParkNanos, long maxParkNanos) {
    if (spins < 0 || yields < 0 || minParkNanos <= 0 || maxParkNanos < minParkNanos) {
      throw new IllegalArgumentException(
          "backoff needs spins, yields >= 0 and 0 < minPark <= maxPark, got " + spins + ", " + yields + ", "
              + minParkNanos + ", " + maxParkNanos);
    }
    this.spins = spins;
    this.yields = yields;
    this.minParkNanos = minParkNanos;
    this.maxParkNanos = maxParkNanos;
    this.park = minParkNanos;
  }

  /** Starts over, hot: for a waiter that keeps one instance for all its waits instead of making one per wait. */
  public Backoff reset() {
    idle = 0;
    park = minParkNanos;
    return this;
  }

  /** True once spinning and yielding are over: the caller checks its deadline, then {@link #park}. */
  public boolean parking() {
    return idle >= spins + yields;
  }

  /** One step of the hot phases: a spin, or a yield once the spins are used up. */
  public void spinOrYield() {
    if (idle++ < spins) Thread.onSpinWait();
    else Thread.yield();
  }

  /** Parks for the current interval (at most {@code maxNanos}), then doubles the interval. */
  public void park(Object blocker, long maxNanos) {
    LockSupport.parkNanos(blocker, Math.min(park, maxNanos));
    park = Math.min(maxParkNanos, park * 2);
  }
}
