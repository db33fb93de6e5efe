package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.cuda.CudaBackend;
import io.moeyard.engine.DType;
import io.moeyard.testkit.Workload;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The parts of the cuda bench and selftest that need no GPU: result assembly, config, comparison. */
class CudaBenchHostTest {

  @Test
  void assemblesTheResultFromDeviceMillis() {
    BenchConfig c = new BenchConfig(2, 10, 128, 4, 2, DType.BF16, null, 3, 1, 128, 1);
    double[][] ms = {{3, 1, 2}, {4, 8, 6}, {0.5, 0.25, 1}, {1, 1, 1}};
    BenchResult r = CudaBench.assemble(c, "NVIDIA H100 80GB HBM3", new int[] {10, 6}, new int[] {15, 9}, 256, 512, ms, 0.5, null, null);
    assertEquals("cuda", r.backend());
    assertEquals("NVIDIA H100 80GB HBM3", r.device());
    assertEquals(8 * 256, r.dispatchBytesPerRank(), 0);
    assertEquals(8 * 512, r.combineBytesPerRank(), 0);
    assertEquals(12 * 256, r.dispatchWrittenBytesPerRank(), 0);
    assertEquals(2000, r.dispatchFused().medianUs(), 1e-9);
    assertEquals(6000, r.dispatchUnfused().medianUs(), 1e-9);
    assertEquals(500, r.combineFused().medianUs(), 1e-9);
    assertEquals(1000, r.combineUnfused().medianUs(), 1e-9);
    assertEquals(2048 / 2000e3, r.dispatchFused().gbps(), 1e-12);
    assertEquals(4096 / 500e3, r.combineFused().gbps(), 1e-12);
    assertEquals(500, r.copyMedianUs(), 1e-9);
    assertEquals(2048 / 500e3, r.copyGbps(), 1e-12);
    assertTrue(r.verified());

    BenchResult bad = CudaBench.assemble(c, "x", new int[] {1, 1}, new int[] {1, 1}, 256, 512, ms, 0.5, "rank 1 received row 3 differs", null);
    assertFalse(bad.verified());
    assertEquals("rank 1 received row 3 differs", bad.verifyNote());
  }

  @Test
  void shapesTheKernelsCannotRunAreNamedBeforeAnyDeviceWork() {
    assertNull(CudaBench.problem(new BenchConfig(8, 4096, 7168, 256, 8, DType.BF16, "deepseek-v3", 20, 5, 128, 1)));
    assertNull(CudaBench.problem(new BenchConfig(8, 16, 7168, 256, 8, DType.FP8_E4M3, null, 1, 0, 128, 1)));
    String p = CudaBench.problem(new BenchConfig(2, 16, 128, 64, 17, DType.BF16, null, 1, 0, 128, 1));
    assertNotNull(p);
    assertTrue(p.contains("topk"), p);
    assertNotNull(CudaBench.problem(new BenchConfig(128, 16, 128, 128, 2, DType.BF16, null, 1, 0, 128, 1)));
  }

  @Test
  void cudaConfigHoldsTheWorkload() {
    for (long seed = 1; seed < 40; seed++) {
      Workload wl = SelfTest.randomCase(seed, 8);
      CommConfig cfg = CudaCheck.config(wl);
      assertEquals(wl.hidden, cfg.hidden());
      assertEquals(wl.topk, cfg.topk());
      assertEquals(wl.dtype, cfg.dispatchType());
      assertEquals(wl.outType, cfg.combineType());
      // the backend takes the workload's own expert map (slots, replicas, nodes)
      CudaBackend.check(wl.map, cfg);
      for (int r = 0; r < wl.ranks(); r++) {
        assertTrue(wl.tokens[r] <= cfg.maxTokens(), "tokens of rank " + r);
        assertTrue(cfg.receiveRows() == 0 || wl.ref.rowsReceivedBy(r) <= cfg.receiveRows(), "rows of rank " + r);
      }
    }
  }

  @Test
  void benchWorkloadIsTheCpuBenchData() {
    BenchConfig c = new BenchConfig(3, 20, 128, 6, 2, DType.FP8_E4M3, null, 1, 0, 128, 5);
    Workload wl = CpuBench.workload(c);
    for (int r = 0; r < 3; r++) {
      java.util.SplittableRandom rnd = CpuBench.routingRandom(c, r);
      assertEquals(java.util.Arrays.toString(Workload.randomRouting(rnd, 20, 6, 2, 0)), java.util.Arrays.toString(wl.idx[r]));
    }
    assertEquals(DType.BF16, wl.outType);
  }

  /** What a rank received, as the cuda check reads it through the Communicator API, built from a CPU run. */
  private static CudaCheck.Received asCuda(CpuRun run, Workload wl, int d, boolean withTokens) {
    byte[] x = run.recv[d].segment().asSlice(run.recv[d].offset(), (long) run.rows[d] * wl.rowBytes())
        .toArray(ValueLayout.JAVA_BYTE);
    return new CudaCheck.Received(run.rows[d], x, run.recvScales[d].clone(), run.recvWeights[d].clone(),
        run.slotCounts[d].clone(), run.pairs[d], run.rowSrc[d].clone(), withTokens ? run.rowToken[d].clone() : null);
  }

  @Test
  void comparisonFindsEveryKindOfDifference() {
    Set<DType> seen = EnumSet.noneOf(DType.class);
    int mutated = 0;
    for (long seed = 100; seed < 160; seed++) {
      Workload wl = SelfTest.randomCase(seed, 24);
      seen.add(wl.dtype);
      try (CpuRun fused = CpuRun.run(wl, true, 16); CpuRun unfused = CpuRun.run(wl, false, 16)) {
        for (int d = 0; d < wl.ranks(); d++) {
          assertNull(CudaCheck.compareDispatch(fused, wl, d, asCuda(fused, wl, d, true)));
          // the unfused path writes no pair records on cuda (no source tokens); everything else must match
          assertNull(CudaCheck.compareDispatch(fused, wl, d, asCuda(unfused, wl, d, false)));
          if (fused.rows[d] == 0) continue;
          mutated++;
          CudaCheck.Received g = asCuda(fused, wl, d, true);
          g.x()[g.x().length - 1] ^= 1;
          assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          g = asCuda(fused, wl, d, true);
          g.weights()[0] = -g.weights()[0];
          assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          g = asCuda(fused, wl, d, true);
          g.slotCounts()[0]++;
          assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          g = asCuda(fused, wl, d, true);
          g.rowToken()[g.rows() - 1] ^= 1;
          assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          g = asCuda(fused, wl, d, true);
          g.rowSrc()[0] ^= 1;
          assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          if (g.scales().length > 0) {
            g = asCuda(fused, wl, d, true);
            g.scales()[0] = Math.nextUp(g.scales()[0]);
            assertNotNull(CudaCheck.compareDispatch(fused, wl, d, g));
          }
        }
        for (int r = 0; r < wl.ranks(); r++) {
          byte[] out = fused.out[r].segment().asSlice(fused.out[r].offset(), fused.out[r].byteSize())
              .toArray(ValueLayout.JAVA_BYTE);
          assertNull(CudaCheck.compareRows(fused.out[r].segment(), fused.out[r].offset(), fused.out[r].byteSize(), out,
              wl.outRowBytes(), "combine output", r));
          if (out.length > 0) {
            out[0] ^= 1;
            assertNotNull(CudaCheck.compareRows(fused.out[r].segment(), fused.out[r].offset(), fused.out[r].byteSize(),
                out, wl.outRowBytes(), "combine output", r));
          }
        }
      }
    }
    assertEquals(EnumSet.allOf(DType.class), seen);
    assertTrue(mutated > 20, "mutated " + mutated);
  }
}
