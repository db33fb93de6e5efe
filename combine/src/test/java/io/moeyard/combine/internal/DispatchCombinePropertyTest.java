package io.moeyard.combine.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.Numerics;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Fused (node relay and direct) and unfused dispatch + combine, through the {@link Communicator}, against the kit's
 * {@link NaiveReference} on many random workloads ({@link Workload#random}): every received row's
 * bytes, scales, weight and origin; per-slot counts; combine's output bit for bit. The seed of a
 * failing case is in the message; replay with -Dmoeyard.test.seed=N.
 */
class DispatchCombinePropertyTest {
  private static final boolean HEAVY = Boolean.getBoolean("moeyard.test.heavy");

  @Test
  void randomWorkloadsMatchTheReference() {
    TestSeed seed = TestSeed.fresh();
    int cases = HEAVY ? 400 : 60;
    for (int i = 0; i < cases; i++) {
      long caseSeed = seed.value() + i;
      Workload wl = Workload.random(caseSeed, HEAVY ? 200 : 40);
      int chunk = 1 + new SplittableRandom(caseSeed).nextInt(16);
      int c = i;
      seed.check(() -> {
        try {
          check(wl, true, CommConfig.NodePath.RELAY, chunk);
          check(wl, true, CommConfig.NodePath.DIRECT, chunk);
          check(wl, false, CommConfig.NodePath.RELAY, chunk);
        } catch (AssertionError | RuntimeException e) {
          throw new AssertionError("case " + c + " " + wl + " chunk=" + chunk + ": " + e.getMessage(), e);
        }
      });
    }
  }

  static byte[] bytes(RowBuffer b, int rows) {
    return b.segment().asSlice(b.offset(), rows * b.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
  }

  private static void check(Workload wl, boolean fused, CommConfig.NodePath path, int chunk) {
    NaiveReference ref = wl.ref;
    RowBuffer[] x = wl.xs();
    RowBuffer[] y = wl.ys();
    CommConfig cfg = wl.config().withChunkPairs(chunk)
        .withVariant(fused ? CommConfig.Variant.FUSED : CommConfig.Variant.UNFUSED).withNodePath(path);
    // the outputs outlive the ranks' bodies; an arena closed here, not the collector, frees them
    // (OffHeap.liveBytes must not move under another test's feet)
    try (CpuWorld world = CpuWorld.create(wl.map.topology()); Arena outArena = Arena.ofShared()) {
      List<RowBuffer> outs = world.run(t -> {
        int r = t.rank();
        try (Communicator comm = Communicator.cpu(t, wl.map, cfg)) {
          Dispatched h = comm.dispatch(x[r], wl.routing(r));
          assertEquals(ref.rowsReceivedBy(r), h.receivedRows(), "rows received by rank " + r);
          int[] counts = new int[h.slots()];
          for (int e = 0; e < counts.length; e++) counts[e] = h.slotCount(e);
          assertArrayEquals(ref.slotCounts(r), counts, "slot counts of rank " + r);
          for (int i = 0; i < h.receivedRows(); i++) {
            assertEquals(ref.sourceRank(r, i), h.rowSourceRank(i), "source rank of row " + i + " on rank " + r);
            assertEquals(ref.sourceToken(r, i), h.rowSourceToken(i), "source token of row " + i + " on rank " + r);
          }
          float[] weights = new float[h.receivedRows()];
          for (int i = 0; i < weights.length; i++) weights[i] = h.receivedWeight(i);
          assertArrayEquals(ref.receivedWeights(r, wl.w), weights, "weights received by rank " + r);
          String p = ref.checkDispatch(r, h.received(), h.receivedRows(), x);
          if (p != null) throw new AssertionError((fused ? "fused " + path : "unfused") + " dispatch: " + p);
          RowBuffer out = RowBuffer.allocate(outArena, wl.tokens[r], wl.hidden, wl.outType);
          // poison the output so unwritten rows show
          out.segment().fill((byte) 0x7F);
          comm.combine(h, y[r], out);
          return out;
        }
      });
      for (int r = 0; r < wl.ranks(); r++) {
        String p = ref.checkCombine(r, wl.w[r], y, outs.get(r));
        if (p != null) throw new AssertionError((fused ? "fused " + path : "unfused") + " combine: " + p);
      }
    }
  }

  @Test
  void rowsCarryTheirSourceRankAndCombineOfUnitWeightsCountsSelections() {
    // DeepEP's check: x rows hold their rank id; combine(dispatch(x)) with unit weights is x times
    // the number of selections of the token.
    TestSeed seed = TestSeed.fresh();
    for (int i = 0; i < 10; i++) {
      Workload wl = Workload.random(seed.value() + i, 30);
      int hidden = 64;
      seed.check(() -> {
        try (CpuWorld world = CpuWorld.create(wl.map.topology())) {
          world.run(t -> {
            int r = t.rank();
            try (Arena arena = Arena.ofConfined()) {
              int n = wl.tokens[r];
              RowBuffer x = RowBuffer.allocate(arena, n, hidden, DType.BF16);
              for (int tk = 0; tk < n; tk++) for (int c = 0; c < hidden; c++) x.setFloat(tk, c, r);
              float[] ones = new float[n * wl.topk];
              java.util.Arrays.fill(ones, 1f);
              Routing routing = new Routing(n, wl.topk, wl.idx[r], ones);
              try (DispatchHandle h = new FusedDispatcher(t, wl.map).dispatch(x, routing)) {
                for (int row = 0; row < h.receivedRows(); row++) {
                  assertEquals((float) h.rowSourceRank(row), h.received().getFloat(row, 0), wl.toString());
                }
                RowBuffer out = RowBuffer.allocate(arena, n, hidden, DType.BF16);
                new FusedCombiner(t).combine(h, h.received(), out);
                for (int tk = 0; tk < n; tk++) {
                  int sel = 0;
                  for (int k = 0; k < wl.topk; k++) if (wl.idx[r][tk * wl.topk + k] >= 0) sel++;
                  assertEquals(Numerics.bf16ToFloat(Numerics.floatToBf16((float) r * sel)), out.getFloat(tk, hidden - 1),
                      wl + " rank " + r + " token " + tk);
                }
              }
            }
            return null;
          });
        }
      });
    }
  }
}
