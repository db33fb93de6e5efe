package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.combine.internal.FusedCombiner;
import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Ties the CUDA tests' expectations to the CPU backend on the host: what {@link KernelCases}
 * expects of a fused dispatch (the kit's reference plus the pair records and send layout it
 * derives) and of combine is, bit for bit, what the CPU backend's fused path gives, on the suite's
 * random workloads. So a GPU that passes {@code CudaWorldGpuTest} also passes {@code moeyard
 * selftest --backend cuda}, and a difference there is a kernel bug, not two readings of the
 * contract.
 */
class ReferenceMatchesCpuBackendTest {

  @Test
  void expectationsEqualTheCpuFusedPath() {
    TestSeed seed = TestSeed.fresh();
    int cases = Boolean.getBoolean("moeyard.test.heavy") ? 300 : 60;
    for (int iter = 0; iter < cases; iter++) {
      Workload wl = Workload.random(seed.value() + iter, 30);
      int c = iter;
      seed.check(() -> check(wl, "case " + c + " " + wl));
    }
  }

  private static void check(Workload wl, String ctx) {
    KernelCases.Expected[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    int ranks = wl.ranks();
    RowBuffer[] y = wl.ys();
    List<Object[]> got;
    try (CpuWorld world = CpuWorld.create(wl.map.topology())) {
      got = world.run(t -> {
        int r = t.rank();
        try (Arena arena = Arena.ofConfined();
            DispatchHandle h = new FusedDispatcher(t, wl.map).dispatch(wl.x(r), wl.routing(r))) {
          int n = h.receivedRows();
          RowBuffer rb = h.received();
          byte[] rx = rb.segment().asSlice(rb.offset(), n * rb.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
          float[] rs = new float[n * wl.scalesPerRow()];
          if (rs.length > 0) MemorySegment.copy(rb.scales(), ValueLayout.JAVA_FLOAT, 0, rs, 0, rs.length);
          int[] ps = new int[h.receivedPairs()];
          int[] pt = new int[ps.length];
          for (int q = 0; q < ps.length; q++) {
            ps[q] = h.pairSourceRank(q);
            pt[q] = h.rowSourceToken(h.pairRow(h.pairRowStart(q)));
          }
          int[] perRank = h.layout().pairsTo.clone();
          byte[] inRank = new byte[wl.tokens[r] * ranks];
          for (int tk = 0; tk < wl.tokens[r]; tk++) {
            for (int d = 0; d < ranks; d++) inRank[tk * ranks + d] = (byte) (h.layout().isTokenInRank(tk, d) ? 1 : 0);
          }
          RowBuffer out = RowBuffer.allocate(arena, wl.tokens[r], wl.hidden, wl.outType);
          new FusedCombiner(t).combine(h, y[r], out);
          return new Object[] {n, rx, rs, Arrays.copyOf(h.receivedWeights(), n), h.slotCounts(), ps, pt, perRank, inRank,
              KernelCases.bytes(out)};
        }
      });
    }
    for (int d = 0; d < ranks; d++) {
      String at = ctx + " rank " + d;
      Object[] g = got.get(d);
      assertEquals(want[d].rows(), (int) g[0], "rows " + at);
      assertArrayEquals(want[d].recvX(), (byte[]) g[1], "recvX " + at);
      assertArrayEquals(want[d].recvScales(), (float[]) g[2], "recvScales " + at);
      assertArrayEquals(want[d].recvWeights(), (float[]) g[3], "recvW " + at);
      assertArrayEquals(want[d].slotCounts(), (int[]) g[4], "slotCounts " + at);
      assertArrayEquals(want[d].pairSrc(), (int[]) g[5], "pairSrc " + at);
      assertArrayEquals(want[d].pairToken(), (int[]) g[6], "pairToken " + at);
      assertArrayEquals(want[d].numTokensPerRank(), (int[]) g[7], "numTokensPerRank " + at);
      assertArrayEquals(want[d].isTokenInRank(), (byte[]) g[8], "isTokenInRank " + at);
      assertArrayEquals(wantOut[d], (byte[]) g[9], "combine " + at);
    }
  }
}
