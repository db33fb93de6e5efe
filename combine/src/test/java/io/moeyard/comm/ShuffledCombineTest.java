package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The delivery's reused scratch across calls: a refused delivery is refused on every rank even
 * when a fast rank is already in its next one, and a later delivery never sees an earlier one's rows.
 */
class ShuffledCombineTest {
  private static final int HIDDEN = 16;
  private static final CommConfig CFG = CommConfig.of(8, HIDDEN, 1, DType.BF16, DType.BF16);

  /** Rank {@code slow} of the world, which returns from its first all-gather {@code delayMillis} late. */
  private static Transport lateOnce(Transport t, int slow, long delayMillis) {
    return new Transport() {
      private boolean first = true;

      @Override
      public int rank() {
        return t.rank();
      }

      @Override
      public int size() {
        return t.size();
      }

      @Override
      public io.moeyard.engine.Topology topology() {
        return t.topology();
      }

      @Override
      public Object[] allGather(Object mine) {
        Object[] got = t.allGather(mine);
        if (first && t.rank() == slow) {
          first = false;
          try {
            Thread.sleep(delayMillis);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
        }
        return got;
      }

      @Override
      public void abort(Throwable cause) {
        t.abort(cause);
      }

      @Override
      public boolean peerStores() {
        return t.peerStores();
      }
    };
  }

  /**
   * Rank 0 sees the first delivery refused (rank 1's buffer is too small) and starts its next one
   * at once, while rank 1 has not yet read the announcements: rank 1 must still refuse the first
   * delivery with the same message (it reads what rank 0 announced for it, not rank 0's next call),
   * and the second delivery then succeeds on both.
   */
  @Test
  void aRefusedDeliveryIsRefusedOnEveryRankWhileAFastRankStartsItsNext() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      try (CpuWorld world = CpuWorld.create(Topology.singleNode(2), Duration.ofSeconds(5)); Arena arena = Arena.ofShared()) {
        List<String> outcome = world.run(t0 -> {
          Transport t = lateOnce(t0, 1, 300);
          int r = t.rank();
          ShuffledCombine shuffle = new ShuffledCombine(t, () -> {
            throw new AssertionError("ranks of one JVM read each other's homes");
          });
          RowBuffer home = RowBuffer.allocate(arena, 8, HIDDEN, DType.BF16);
          Workload.fill(home, new SplittableRandom(seed.value() + r));
          // first call: 16 rows for rank 1, which holds 8
          int[] toOne = new int[8];
          Arrays.fill(toOne, 1);
          RowBuffer into = RowBuffer.allocate(arena, 8, HIDDEN, DType.BF16);
          String first;
          try {
            shuffle.deliver(toOne, into, home);
            first = "rank " + r + " delivered";
          } catch (CollectiveException e) {
            first = e.getMessage();
          }
          // second call: every rank keeps its own tokens
          int[] own = new int[8];
          Arrays.fill(own, r);
          Arrivals a = shuffle.deliver(own, into, home);
          assertEquals(8, a.rows());
          for (int i = 0; i < 8; i++) {
            assertEquals(r, a.sourceRank(i));
            assertEquals(i, a.sourceToken(i));
          }
          assertEquals(-1, MemorySegment.mismatch(home.segment(), home.offset(), home.offset() + 8 * home.rowBytes(),
              into.segment(), into.offset(), into.offset() + 8 * into.rowBytes()));
          return first;
        });
        String want = "combine: rank 1: the shuffle buffer holds 8 rows, 16 tokens arrive";
        assertEquals(List.of(want, want), outcome);
      }
    });
  }
}
