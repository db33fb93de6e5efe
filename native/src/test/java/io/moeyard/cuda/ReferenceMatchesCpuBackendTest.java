package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.comm.CommConfig;
import io.moeyard.combine.FusedCombiner;
import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Ties the two contracts together on the host: the {@link Reference} the CUDA kernels are tested
 * against on a GPU ({@code CudaWorldGpuTest}) gives, bit for bit, what the CPU backend's fused
 * path gives (receive rows, weights, FP8 scales, slot counts, pair records, combine outputs) on
 * random configurations with replicas, several nodes, empty ranks and -1 entries. So a GPU that
 * passes {@code CudaWorldGpuTest} also passes {@code moeyard selftest --backend cuda}, and a
 * difference there is a kernel bug, not two readings of the contract.
 */
class ReferenceMatchesCpuBackendTest {

  @Test
  void referenceEqualsTheCpuFusedPath() {
    long seed = NativeTestSupport.seed("referenceEqualsTheCpuFusedPath");
    Random rnd = new Random(seed);
    int cases = Boolean.getBoolean("moeyard.test.heavy") ? 300 : 60;
    for (int iter = 0; iter < cases; iter++) {
      int ranks = 1 + rnd.nextInt(6);
      int[] divisors = java.util.stream.IntStream.rangeClosed(1, ranks).filter(d -> ranks % d == 0).toArray();
      int local = divisors[rnd.nextInt(divisors.length)];
      int s = 1 + rnd.nextInt(6);
      int slots = ranks * s;
      int experts = 1 + rnd.nextInt(slots);
      // the CPU map has no unused slots: every slot holds an expert (replicas beyond the first)
      int[] p2l = new int[slots];
      for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : rnd.nextInt(experts);
      for (int p = slots - 1; p > 0; p--) {
        int j = rnd.nextInt(p + 1);
        int t = p2l[p]; p2l[p] = p2l[j]; p2l[j] = t;
      }
      Topology topo = new Topology(ranks / local, local);
      ExpertMap map = ExpertMap.of(topo, experts, p2l);
      DType dt = DType.values()[rnd.nextInt(DType.values().length)];
      int hidden = dt == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(2)) : 1 + rnd.nextInt(40);
      int k = 1 + rnd.nextInt(Math.min(experts, 8));
      DType comb = dt == DType.FP8_E4M3 ? DType.BF16 : dt;
      var cfg = KernelShape.of(map, CommConfig.of(30, hidden, k, dt, comb));
      int[] tokens = new int[ranks];
      int[][] idx = new int[ranks][];
      float[][] w = new float[ranks][];
      byte[][] x = new byte[ranks][];
      float[][] sc = new float[ranks][];
      double pNone = rnd.nextInt(3) == 0 ? 0.3 : 0.0;
      for (int r = 0; r < ranks; r++) {
        tokens[r] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(30);
        idx[r] = Reference.randomTopk(rnd, tokens[r], k, experts, pNone);
        w[r] = Reference.randomWeights(rnd, tokens[r] * k);
        x[r] = Reference.randomRows(rnd, (long) tokens[r] * hidden, dt);
        sc[r] = dt == DType.FP8_E4M3 ? Reference.randomWeights(rnd, tokens[r] * (hidden / 128)) : null;
      }
      var pb = new Reference.Problem(cfg, tokens, idx, w, x, sc);
      Reference.DispatchOut[] want = Reference.dispatch(pb);
      byte[][] y = new byte[ranks][];
      for (int d = 0; d < ranks; d++) y[d] = Reference.randomRows(rnd, (long) want[d].rows() * hidden, comb);
      byte[][] wantOut = Reference.combine(pb, y);
      String ctx = "case " + iter + " (seed " + seed + "): R=" + ranks + " local=" + local + " S=" + s + " E=" + experts
          + " K=" + k + " H=" + hidden + " " + dt + " tokens=" + Arrays.toString(tokens);

      DType xt = dt;
      DType yt = comb;
      Object[][] got = new Object[ranks][];
      try (CpuWorld world = CpuWorld.create(topo)) {
        world.run(t -> {
          int r = t.rank();
          RowBuffer xb = new RowBuffer(MemorySegment.ofArray(x[r]), 0, tokens[r], hidden, xt,
              sc[r] == null ? null : MemorySegment.ofArray(sc[r]));
          try (Arena arena = Arena.ofConfined();
              DispatchHandle h = new FusedDispatcher(t, map).dispatch(xb, new Routing(tokens[r], k, idx[r], w[r]))) {
            int n = h.receivedRows();
            RowBuffer rb = h.received();
            byte[] rx = rb.segment().asSlice(rb.offset(), n * rb.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
            float[] rs = new float[n * cfg.scaleCols()];
            if (rs.length > 0) MemorySegment.copy(rb.scales(), ValueLayout.JAVA_FLOAT, 0, rs, 0, rs.length);
            int[] ps = new int[h.receivedPairs()];
            int[] pt = new int[ps.length];
            for (int q = 0; q < ps.length; q++) {
              ps[q] = h.pairSourceRank(q);
              pt[q] = h.rowSourceToken(h.pairRow(h.pairRowStart(q)));
            }
            RowBuffer yb = new RowBuffer(MemorySegment.ofArray(y[r]), 0, n, hidden, yt, null);
            RowBuffer out = RowBuffer.allocate(arena, tokens[r], hidden, yt);
            new FusedCombiner(t).combine(h, yb, out);
            byte[] o = out.segment().asSlice(out.offset(), out.byteSize()).toArray(ValueLayout.JAVA_BYTE);
            got[r] = new Object[] {n, rx, rs, Arrays.copyOf(h.receivedWeights(), n), h.slotCounts(), ps, pt, o};
          }
          return null;
        });
      }
      for (int d = 0; d < ranks; d++) {
        String at = ctx + " rank " + d;
        assertEquals(want[d].rows(), (int) got[d][0], "rows " + at);
        assertArrayEquals(want[d].recvX(), (byte[]) got[d][1], "recvX " + at);
        assertArrayEquals(want[d].recvScales(), (float[]) got[d][2], "recvScales " + at);
        assertArrayEquals(want[d].recvW(), (float[]) got[d][3], "recvW " + at);
        assertArrayEquals(want[d].slotCounts(), (int[]) got[d][4], "slotCounts " + at);
        assertArrayEquals(want[d].pairSrc(), (int[]) got[d][5], "pairSrc " + at);
        assertArrayEquals(want[d].pairToken(), (int[]) got[d][6], "pairToken " + at);
        assertArrayEquals(wantOut[d], (byte[]) got[d][7], "combine " + at);
      }
    }
  }
}
