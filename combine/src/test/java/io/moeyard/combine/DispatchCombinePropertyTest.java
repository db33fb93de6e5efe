package io.moeyard.combine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.DispatchOptions;
import io.moeyard.dispatch.Dispatcher;
import io.moeyard.dispatch.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.UnfusedDispatcher;
import io.moeyard.engine.DType;
import io.moeyard.engine.Numerics;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.CpuWorld;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Fused and unfused dispatch + combine, through the {@link Communicator}, against {@link Reference}
 * on many random worlds: every
 * received row's bytes, scales, weight and origin; per-slot counts; combine's output bit for bit.
 * The seed of a failing case is in the message; replay with -Dmoeyard.test.seed=N.
 */
class DispatchCombinePropertyTest {
  private static final boolean HEAVY = Boolean.getBoolean("moeyard.test.heavy");

  @Test
  void randomWorldsMatchTheReference() {
    long base = Long.getLong("moeyard.test.seed", System.nanoTime());
    int cases = HEAVY ? 400 : 60;
    for (int i = 0; i < cases; i++) {
      Scenario s = Scenario.random(base + i, HEAVY ? 200 : 40);
      int chunk = 1 + new SplittableRandom(s.seed).nextInt(16);
      try {
        check(s, true, chunk);
        check(s, false, chunk);
      } catch (AssertionError | RuntimeException e) {
        throw new AssertionError("case " + s + " chunk=" + chunk + ": " + e.getMessage(), e);
      }
    }
  }

  static byte[] bytes(RowBuffer b, int rows) {
    return b.segment().asSlice(b.offset(), rows * b.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
  }

  static void fillRandom(RowBuffer b, SplittableRandom rnd) {
    for (int row = 0; row < b.rows(); row++) {
      for (int c = 0; c < b.hidden(); c++) {
        if (b.dtype() == DType.FP8_E4M3) {
          b.segment().set(ValueLayout.JAVA_BYTE, b.rowOffset(row) + c, (byte) rnd.nextInt(256));
        } else {
          b.setFloat(row, c, (float) rnd.nextDouble(-4, 4));
        }
      }
    }
    if (b.scales() != null) {
      for (long i = 0; i < (long) b.rows() * b.scalesPerRow(); i++) {
        b.scales().setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) rnd.nextDouble(0.01, 2));
      }
    }
  }

  private static void check(Scenario s, boolean fused, int chunk) {
    int ranks = s.topology.worldSize();
    DType outType = s.dtype == DType.FP8_E4M3 ? DType.BF16 : s.dtype;
    List<List<Reference.Row>> expected = Reference.dispatch(s.map, s.topkIdx, s.tokens, s.topk);
    try (CpuWorld world = CpuWorld.create(s.topology); Arena arena = Arena.ofShared()) {
      RowBuffer[] x = new RowBuffer[ranks];
      RowBuffer[] y = new RowBuffer[ranks];
      for (int r = 0; r < ranks; r++) {
        x[r] = RowBuffer.allocate(arena, s.tokens[r], s.hidden, s.dtype);
        fillRandom(x[r], new SplittableRandom(s.seed * 31 + r));
        int rows = expected.get(r).size();
        y[r] = RowBuffer.allocate(arena, rows, s.hidden, outType);
        fillRandom(y[r], new SplittableRandom(s.seed * 37 + r));
      }
      byte[][] yBytes = new byte[ranks][];
      for (int r = 0; r < ranks; r++) yBytes[r] = bytes(y[r], y[r].rows());
      int maxTokens = 0;
      for (int n : s.tokens) maxTokens = Math.max(maxTokens, n);
      CommConfig cfg = CommConfig.of(maxTokens, s.hidden, s.topk, s.dtype, outType).withChunkPairs(chunk)
          .withVariant(fused ? CommConfig.Variant.FUSED : CommConfig.Variant.UNFUSED);
      List<float[][]> outs = world.run(t -> {
        int r = t.rank();
        Routing routing = new Routing(s.tokens[r], s.topk, s.topkIdx[r], s.topkWeights[r]);
        try (Communicator comm = Communicator.cpu(t, s.map, cfg)) {
          Dispatched h = comm.dispatch(x[r], routing);
          List<Reference.Row> want = expected.get(r);
          assertEquals(want.size(), h.receivedRows(), "rows received by rank " + r);
          int[] counts = new int[h.slots()];
          for (int e = 0; e < counts.length; e++) counts[e] = h.slotCount(e);
          int[] wantCounts = new int[s.map.slotsPerRank()];
          for (Reference.Row row : want) wantCounts[row.localSlot()]++;
          assertArrayEquals(wantCounts, counts, "slot counts of rank " + r);
          for (int i = 0; i < want.size(); i++) {
            Reference.Row row = want.get(i);
            assertEquals(row.srcRank(), h.rowSourceRank(i), "source rank of row " + i + " on rank " + r);
            assertEquals(row.token(), h.rowSourceToken(i), "source token of row " + i + " on rank " + r);
            assertEquals(s.topkWeights[row.srcRank()][row.token() * s.topk + row.k()], h.receivedWeight(i));
            RowBuffer src = x[row.srcRank()];
            RowBuffer got = h.received();
            long mismatch = MemorySegment.mismatch(src.segment(), src.rowOffset(row.token()), src.rowOffset(row.token()) + src.rowBytes(),
                got.segment(), got.rowOffset(i), got.rowOffset(i) + got.rowBytes());
            assertEquals(-1, mismatch, "payload of row " + i + " on rank " + r);
            if (s.dtype.hasScales()) {
              int spr = got.scalesPerRow();
              for (int j = 0; j < spr; j++) {
                assertEquals(src.scales().getAtIndex(ValueLayout.JAVA_FLOAT, (long) row.token() * spr + j),
                    got.scales().getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * spr + j), "scale " + j + " of row " + i);
              }
            }
          }
          RowBuffer out = RowBuffer.allocate(Arena.ofAuto(), s.tokens[r], s.hidden, outType);
          // poison the output so unwritten rows show
          out.segment().fill((byte) 0x7F);
          comm.combine(h, y[r], out);
          float[][] res = new float[s.tokens[r]][s.hidden];
          for (int tk = 0; tk < s.tokens[r]; tk++) for (int c = 0; c < s.hidden; c++) res[tk][c] = out.getFloat(tk, c);
          return res;
        }
      });
      for (int r = 0; r < ranks; r++) {
        float[][] want = Reference.combine(s.map, expected, yBytes, outType, s.hidden, r, s.tokens[r], s.topk,
            s.topkIdx[r], s.topkWeights[r]);
        for (int t = 0; t < s.tokens[r]; t++) {
          for (int c = 0; c < s.hidden; c++) {
            if (Float.floatToIntBits(want[t][c]) != Float.floatToIntBits(outs.get(r)[t][c])) {
              throw new AssertionError((fused ? "fused" : "unfused") + " combine rank " + r + " token " + t + " channel " + c
                  + ": expected " + want[t][c] + " got " + outs.get(r)[t][c]);
            }
          }
        }
      }
    }
  }

  @Test
  void rowsCarryTheirSourceRankAndCombineOfUnitWeightsCountsSelections() {
    // DeepEP's check: x rows hold their rank id; combine(dispatch(x)) with unit weights is x times
    // the number of selections of the token.
    long seed = System.nanoTime();
    for (int i = 0; i < 10; i++) {
      Scenario s0 = Scenario.random(seed + i, 30);
      int ranks = s0.topology.worldSize();
      int hidden = 64;
      try (CpuWorld world = CpuWorld.create(s0.topology)) {
        world.run(t -> {
          int r = t.rank();
          try (Arena arena = Arena.ofConfined()) {
            int n = s0.tokens[r];
            RowBuffer x = RowBuffer.allocate(arena, n, hidden, DType.BF16);
            for (int tk = 0; tk < n; tk++) for (int c = 0; c < hidden; c++) x.setFloat(tk, c, r);
            float[] ones = new float[n * s0.topk];
            java.util.Arrays.fill(ones, 1f);
            Routing routing = new Routing(n, s0.topk, s0.topkIdx[r], ones);
            try (DispatchHandle h = new FusedDispatcher(t, s0.map).dispatch(x, routing)) {
              for (int row = 0; row < h.receivedRows(); row++) {
                assertEquals((float) h.rowSourceRank(row), h.received().getFloat(row, 0), "seed " + s0.seed);
              }
              RowBuffer out = RowBuffer.allocate(arena, n, hidden, DType.BF16);
              new FusedCombiner(t).combine(h, h.received(), out);
              for (int tk = 0; tk < n; tk++) {
                int sel = 0;
                for (int k = 0; k < s0.topk; k++) if (s0.topkIdx[r][tk * s0.topk + k] >= 0) sel++;
                assertEquals(Numerics.bf16ToFloat(Numerics.floatToBf16((float) r * sel)), out.getFloat(tk, hidden - 1),
                    "seed " + s0.seed + " rank " + r + " token " + tk);
              }
            }
          }
          return null;
        });
      }
      assertEquals(ranks, s0.topology.worldSize());
    }
  }
}
