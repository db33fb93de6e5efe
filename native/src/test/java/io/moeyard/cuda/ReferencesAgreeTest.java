package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Temporary: the kit's NaiveReference side by side with the three references it replaces (combine
 * tests' Reference, this package's Reference, the bench's NaiveReference) on random workloads.
 */
class ReferencesAgreeTest {

  @Test
  void theOldReferencesAgreeWithTheKit() {
    TestSeed seed = TestSeed.fresh();
    int cases = Integer.getInteger("agree.cases", 300);
    int[] stats = new int[8];
    for (int i = 0; i < cases; i++) {
      long s = seed.value() + i;
      Workload wl = Workload.random(s, 40);
      seed.check(() -> {
        try {
          compare(wl, stats);
        } catch (AssertionError | RuntimeException e) {
          throw new AssertionError("case " + s + " " + wl + ": " + e.getMessage(), e);
        }
      });
    }
    System.out.println("agree: " + cases + " cases; fp8 " + stats[0] + ", replicas " + stats[1] + ", empty receivers " + stats[2]
        + ", top-1 " + stats[3] + ", multi-node " + stats[4] + ", -1 entries " + stats[5] + ", selections " + stats[6]);
  }

  private static void compare(Workload wl, int[] stats) {
    NaiveReference ref = wl.ref;
    int ranks = wl.ranks();
    RowBuffer[] x = wl.xs();
    RowBuffer[] y = wl.ys();
    stats[0] += wl.dtype == DType.FP8_E4M3 ? 1 : 0;
    stats[1] += wl.map.slots() > wl.map.experts() ? 1 : 0;
    for (int d = 0; d < ranks; d++) if (ref.rowsReceivedBy(d) == 0) { stats[2]++; break; }
    stats[3] += wl.topk == 1 ? 1 : 0;
    stats[4] += wl.map.topology().nodes() > 1 ? 1 : 0;
    for (int[] a : wl.idx) for (int e : a) if (e < 0) { stats[5]++; break; }

    // 1. the combine tests' Reference: receive order, origins, combine floats
    List<List<OldCombineReference.Row>> old = OldCombineReference.dispatch(wl.map, wl.idx, wl.tokens, wl.topk);
    for (int d = 0; d < ranks; d++) {
      List<OldCombineReference.Row> rows = old.get(d);
      assertEquals(rows.size(), ref.rowsReceivedBy(d), "rows of " + d);
      stats[6] += rows.size();
      int[] counts = new int[wl.map.slotsPerRank()];
      for (int i = 0; i < rows.size(); i++) {
        OldCombineReference.Row row = rows.get(i);
        assertEquals(row.srcRank(), ref.sourceRank(d, i));
        assertEquals(row.token(), ref.sourceToken(d, i));
        assertEquals(row.k(), ref.sourceK(d, i));
        assertEquals(i, ref.row(row.srcRank(), row.token(), row.k()));
        assertEquals(d * wl.map.slotsPerRank() + row.localSlot(), ref.slot(row.srcRank(), row.token(), row.k()));
        counts[row.localSlot()]++;
      }
      assertArrayEquals(counts, ref.slotCounts(d));
    }
    byte[][] yBytes = new byte[ranks][];
    for (int d = 0; d < ranks; d++) yBytes[d] = wl.y[d].clone();
    RowBuffer[] combined = new RowBuffer[ranks];
    for (int r = 0; r < ranks; r++) {
      combined[r] = ref.combined(r, wl.w[r], y, wl.outType);
      float[][] want = OldCombineReference.combine(wl.map, old, yBytes, wl.outType, wl.hidden, r, wl.tokens[r], wl.topk,
          wl.idx[r], wl.w[r]);
      for (int t = 0; t < wl.tokens[r]; t++) {
        for (int c = 0; c < wl.hidden; c++) {
          assertEquals(Float.floatToRawIntBits(want[t][c]), Float.floatToRawIntBits(combined[r].getFloat(t, c)),
              "combine rank " + r + " token " + t + " channel " + c + ": old " + want[t][c] + " new " + combined[r].getFloat(t, c));
        }
      }
    }

    // 2. the bench's NaiveReference: the kit's outputs pass its checks
    OldBenchReference bench = new OldBenchReference(wl.map, wl.idx, wl.tokens, wl.topk);
    for (int d = 0; d < ranks; d++) {
      assertEquals(bench.rowsReceivedBy(d), ref.rowsReceivedBy(d));
      RowBuffer recv = ref.received(d, x);
      assertNull(bench.checkDispatch(d, recv, recv.rows(), x));
      assertNull(ref.checkDispatch(d, recv, recv.rows(), x));
      assertNull(bench.checkCombine(d, wl.w[d], y, combined[d]));
      assertNull(ref.checkCombine(d, wl.w[d], y, combined[d]));
    }

    // 3. this package's Reference: every dispatch output, pair records, combine bytes
    if (wl.topk > KernelShape.MAX_TOPK) return;
    KernelShape shape = KernelShape.of(wl.map, CommConfig.of(Math.max(1, wl.maxTokens()), wl.hidden, wl.topk, wl.dtype, wl.outType));
    Reference.Problem pb = new Reference.Problem(shape, wl.tokens, wl.idx, wl.w, wl.x,
        wl.dtype.hasScales() ? wl.xScales : new float[ranks][]);
    Reference.DispatchOut[] nat = Reference.dispatch(pb);
    for (int r = 0; r < ranks; r++) {
      int[] ids = Reference.slotIds(shape, r, wl.idx[r]);
      for (int t = 0; t < wl.tokens[r]; t++) {
        for (int k = 0; k < wl.topk; k++) {
          assertEquals(ids[t * wl.topk + k], ref.slot(r, t, k), "slot");
          assertEquals(NaiveReference.chooseSlot(wl.map, r, t, Math.max(0, wl.idx[r][t * wl.topk + k])),
              wl.map.chooseSlot(r, t, Math.max(0, wl.idx[r][t * wl.topk + k])), "ExpertMap.chooseSlot");
        }
        assertArrayEquals(Reference.destRanks(ids, wl.topk, wl.map.slotsPerRank(), t), ref.destinations(r, t));
      }
    }
    for (int d = 0; d < ranks; d++) {
      RowBuffer recv = ref.received(d, x);
      assertEquals(nat[d].rows(), recv.rows());
      assertArrayEquals(nat[d].recvX(), recv.segment().toArray(ValueLayout.JAVA_BYTE), "recvX " + d);
      float[] sc = recv.scales() == null ? new float[0] : recv.scales().toArray(ValueLayout.JAVA_FLOAT);
      assertArrayEquals(nat[d].recvScales(), sc, "scales " + d);
      assertArrayEquals(nat[d].recvW(), ref.receivedWeights(d, wl.w), "weights " + d);
      assertArrayEquals(nat[d].slotCounts(), ref.slotCounts(d), "slot counts " + d);
      List<Integer> ps = new ArrayList<>();
      List<Integer> pt = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        for (int t = 0; t < wl.tokens[r]; t++) {
          for (int dest : ref.destinations(r, t)) {
            if (dest == d) {
              ps.add(r);
              pt.add(t);
            }
          }
        }
      }
      assertArrayEquals(nat[d].pairSrc(), ps.stream().mapToInt(Integer::intValue).toArray(), "pair sources " + d);
      assertArrayEquals(nat[d].pairToken(), pt.stream().mapToInt(Integer::intValue).toArray(), "pair tokens " + d);
    }
    byte[][] natOut = Reference.combine(pb, yBytes);
    for (int r = 0; r < ranks; r++) {
      assertArrayEquals(natOut[r], combined[r].segment().toArray(ValueLayout.JAVA_BYTE), "combine bytes " + r);
    }
  }
}
