package io.moeyard.engine.shm;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The futex the control block sleeps on: a sleeper is woken by a change and a wake long before its
 * (long) timeout, and never sleeps when the word already differs. Bounds are seconds against a
 * 20-second timeout: what is checked is that the wake arrives, not how fast.
 */
class FutexTest {
  private static final long LONG_NANOS = TimeUnit.SECONDS.toNanos(20);

  @Test
  void aWakeEndsTheSleepLongBeforeItsTimeout() throws Exception {
    Assumptions.assumeTrue(Futex.available(), "no futex here (not Linux x86-64, or native access denied)");
    try (Arena arena = Arena.ofShared()) {
      MemorySegment word = arena.allocate(4, 4);
      MemorySegment ts = Futex.timespec(arena);
      CompletableFuture<Long> slept = CompletableFuture.supplyAsync(() -> {
        long t0 = System.nanoTime();
        Futex.await(word, 0, LONG_NANOS, ts);
        return System.nanoTime() - t0;
      });
      Thread.sleep(100); // let it fall asleep (if it has not, the changed word returns it at once)
      word.set(ValueLayout.JAVA_INT, 0, 1);
      Futex.wake(word);
      long nanos = slept.get(10, TimeUnit.SECONDS);
      assertTrue(nanos < TimeUnit.SECONDS.toNanos(10), "woke after " + nanos / 1_000_000 + " ms");
    }
  }

  @Test
  void aWordThatAlreadyChangedDoesNotSleep() {
    Assumptions.assumeTrue(Futex.available(), "no futex here (not Linux x86-64, or native access denied)");
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment word = arena.allocate(4, 4);
      word.set(ValueLayout.JAVA_INT, 0, 7);
      long t0 = System.nanoTime();
      Futex.await(word, 6, LONG_NANOS, Futex.timespec(arena));
      long nanos = System.nanoTime() - t0;
      assertTrue(nanos < TimeUnit.SECONDS.toNanos(10), "slept " + nanos / 1_000_000 + " ms on a word that differed");
    }
  }

  @Test
  void theTimeoutEndsASleepNobodyWakes() {
    Assumptions.assumeTrue(Futex.available(), "no futex here (not Linux x86-64, or native access denied)");
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment word = arena.allocate(4, 4);
      long t0 = System.nanoTime();
      Futex.await(word, 0, TimeUnit.MILLISECONDS.toNanos(50), Futex.timespec(arena));
      long nanos = System.nanoTime() - t0;
      assertTrue(nanos < TimeUnit.SECONDS.toNanos(10), "slept " + nanos / 1_000_000 + " ms of a 50 ms timeout");
    }
  }
}
