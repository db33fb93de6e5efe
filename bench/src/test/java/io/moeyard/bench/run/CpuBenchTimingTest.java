package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** One bench sample is the collective's wall time: the first rank's start to the last rank's end. */
class CpuBenchTimingTest {
  @Test
  void spanRunsFromEarliestStartToLatestEnd() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 100; trial++) {
      int ranks = 1 + rnd.nextInt(8);
      Object[] spans = new Object[ranks];
      long first = Long.MAX_VALUE;
      long last = Long.MIN_VALUE;
      for (int r = 0; r < ranks; r++) {
        long start = rnd.nextLong(1_000_000);
        long end = start + rnd.nextLong(1_000_000);
        spans[r] = new long[] {start, end};
        first = Math.min(first, start);
        last = Math.max(last, end);
      }
      assertEquals(last - first, CpuBench.wallSpan(spans), seed.toString());
    }
  }
}
