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

  /**
   * One delivery object for calls of varying size (zero tokens, everything to one rank, a rank
   * that receives nothing): every call's arrivals and rows are that call's alone, however many
   * rows an earlier call left in the reused arrays.
   */
  @Test
  void deliveriesOfVaryingSizeEachGiveTheirOwnRows() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      SplittableRandom rnd = new SplittableRandom(seed.value());
      int ranks = 3;
      int calls = 16;
      int[][][] next = new int[calls][ranks][];
      for (int c = 0; c < calls; c++) {
        int everyoneTo = c % 4 == 1 ? rnd.nextInt(ranks) : -1;
        for (int r = 0; r < ranks; r++) {
          int tokens = c % 5 == 2 ? 0 : rnd.nextInt(9);
          next[c][r] = new int[tokens];
          for (int t = 0; t < tokens; t++) next[c][r][t] = everyoneTo >= 0 ? everyoneTo : rnd.nextInt(ranks);
        }
      }
      long fill = rnd.nextLong();
      try (CpuWorld world = CpuWorld.create(Topology.singleNode(ranks), Duration.ofSeconds(20)); Arena arena = Arena.ofShared()) {
        world.run(t -> {
          int r = t.rank();
          ShuffledCombine shuffle = new ShuffledCombine(t, () -> {
            throw new AssertionError("ranks of one JVM read each other's homes");
          });
          RowBuffer into = RowBuffer.allocate(arena, 8 * ranks, HIDDEN, DType.BF16);
          Arrivals previous = null;
          for (int c = 0; c < calls; c++) {
            RowBuffer home = RowBuffer.allocate(arena, next[c][r].length, HIDDEN, DType.BF16);
            Workload.fill(home, new SplittableRandom(fill + 31L * c + r));
            Arrivals a = shuffle.deliver(next[c][r], into, home);
            if (previous != null) assertEquals(previous, a, "the communicator's own arrivals, refilled");
            previous = a;
            int i = 0;
            for (int s = 0; s < ranks; s++) {
              RowBuffer expected = RowBuffer.allocate(arena, Math.max(1, next[c][s].length), HIDDEN, DType.BF16);
              Workload.fill(expected, new SplittableRandom(fill + 31L * c + s));
              for (int tok = 0; tok < next[c][s].length; tok++) {
                if (next[c][s][tok] != r) continue;
                assertEquals(s, a.sourceRank(i), "call " + c + " rank " + r + " row " + i);
                assertEquals(tok, a.sourceToken(i), "call " + c + " rank " + r + " row " + i);
                assertEquals(-1, MemorySegment.mismatch(expected.segment(), expected.rowOffset(tok),
                    expected.rowOffset(tok) + expected.rowBytes(), into.segment(), into.rowOffset(i),
                    into.rowOffset(i) + into.rowBytes()), "call " + c + " rank " + r + " row " + i);
                i++;
              }
            }
            assertEquals(i, a.rows(), "call " + c + " rank " + r);
            int rows = i;
            org.junit.jupiter.api.Assertions.assertThrows(IndexOutOfBoundsException.class, () -> a.sourceRank(rows));
          }
          return null;
        });
      }
    });
  }
}
