package io.moeyard.cuda;

import io.moeyard.engine.transport.Backoff;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The host's bounded, watched wait for something only polling can see (a stream of a process whose
 * peers may die, a non-blocking NCCL call): a wait inside CUDA or NCCL cannot be bounded or ended
 * from outside, so every such wait is a poll loop, and this is the one loop.
 */
final class HostWait {
  private HostWait() {}

  /**
   * Polls {@code done} (spinning, yielding, then napping at most 2 ms) until it is true; while it
   * is not, runs {@code watch} at most every {@code watchNanos} (whatever it throws ends the wait),
   * and throws {@code late}'s exception once {@code deadline} ({@link System#nanoTime}) passed.
   */
  static void until(BooleanSupplier done, long deadline, long watchNanos, Runnable watch,
      Supplier<? extends RuntimeException> late) {
    Backoff backoff = new Backoff(256, 64, 20_000, 2_000_000);
    long nextWatch = System.nanoTime() + watchNanos;
    while (!done.getAsBoolean()) {
      if (!backoff.parking()) {
        backoff.spinOrYield();
        continue;
      }
      long now = System.nanoTime();
      if (now - nextWatch >= 0) {
        watch.run();
        now = System.nanoTime();
        nextWatch = now + watchNanos;
      }
      long left = deadline - now;
      if (left <= 0) throw late.get();
      backoff.park(done, Math.min(left, nextWatch - now));
    }
  }
}
