package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.Workload;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Dispatch and combine on the GPU (R virtual ranks on one device) against the kit's naive
 * reference ({@link KernelCases}), bit for bit, fused and unfused. Skipped with "CUDA backend
 * unavailable: &lt;reason&gt;" where there is no GPU (here, CI).
 */
class CudaBackendGpuTest {

  @BeforeEach
  void gpu() {
    NativeTestSupport.requireGpu();
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void dispatchAndCombineMatchReference(DType dtype) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int iter = 0; iter < 12; iter++) {
      int ranks = 1 + rnd.nextInt(8);
      int local = rnd.nextBoolean() ? ranks : 1;
      int s = 1 + rnd.nextInt(4);
      int experts = 1 + rnd.nextInt(ranks * s);
      int k = 1 + rnd.nextInt(Math.min(experts, 8));
      int hidden = dtype == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(3))
          : new int[] {128, 256, 7 * 128, 100, 36, 33}[rnd.nextInt(6)];
      Workload wl = KernelCases.random(rnd, ranks, local, s, experts, k, hidden, dtype, 300, 0.1);
      seed.check(() -> check(wl));
    }
    // and the suite's own random workloads
    for (int iter = 0; iter < 40; iter++) {
      Workload wl = Workload.random(seed.value() + iter, 64);
      if (wl.dtype == dtype) seed.check(() -> check(wl));
    }
  }

  @Test
  void emptyRanksTopk1AndOneHotExpert() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      // zero tokens everywhere
      check(KernelCases.random(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0));
      // top-k 1
      check(KernelCases.random(rnd, 4, 4, 2, 8, 1, 256, DType.FP16, 500, 0.0));
      // all -1
      check(KernelCases.random(rnd, 2, 2, 2, 4, 3, 128, DType.FP32, 50, 1.0));
      // all tokens of all ranks to expert 0, and ranks 1..3 receive nothing
      var cfg = KernelCases.trivial(4, 4, 2, 256, 1, DType.BF16);
      check(KernelCases.routed(cfg, new int[] {700, 0, 3, 129}, (r, t, j) -> 0, rnd.nextLong()));
      // a rank that receives nothing (experts 6, 7 on rank 3 never chosen), top-k 3
      var cfg2 = KernelCases.trivial(4, 2, 2, 128, 3, DType.FP32);
      check(KernelCases.routed(cfg2, new int[] {64, 65, 0, 1}, (r, t, j) -> (t + 2 * j + r) % 6, rnd.nextLong()));
    });
  }

  @Test
  void deepSeekShapeSmall() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    // 8 ranks, 256 experts + 32 redundant slots (S = 36), top-8, hidden 7168, BF16 and FP8
    for (DType dt : new DType[] {DType.BF16, DType.FP8_E4M3}) {
      Workload wl = KernelCases.random(rnd, 8, 8, 36, 256, 8, 7168, dt, 96, 0.0);
      seed.check(() -> check(wl));
    }
  }

  @Test
  void asyncFormsGiveTheSameResults() throws Exception {
    TestSeed seed = TestSeed.fresh();
    Workload wl = KernelCases.random(seed.random(), 4, 4, 3, 10, 3, 256, DType.BF16, 200, 0.05);
    seed.check(() -> {
      try (CudaBackend be = KernelCases.openAndUpload(wl)) {
        var sync = be.dispatch(CudaBackend.Variant.FUSED);
        var async = be.dispatchAsync(CudaBackend.Variant.FUSED).get();
        for (int d = 0; d < wl.ranks(); d++) {
          assertArrayEquals(sync[d].recvX(), async[d].recvX());
          be.setExpertOutputs(d, wl.y[d]);
        }
        byte[][] out = be.combineAsync(CudaBackend.Variant.FUSED).get();
        byte[][] want = KernelCases.combine(wl);
        for (int r = 0; r < wl.ranks(); r++) {
          assertArrayEquals(want[r], out[r], "rank " + r);
        }
      }
    });
  }

  /** Not a benchmark: checks that timings are reported, and prints them for the GPU run's log. */
  @Test
  void timingsAreReported() {
    SplittableRandom rnd = TestSeed.fresh().random();
    Workload pb = KernelCases.random(rnd, 8, 8, 32, 256, 8, 7168, DType.BF16, 512, 0.0);
    try (CudaBackend be = KernelCases.openAndUpload(pb)) {
      long bytes = 0;
      for (CudaBackend.Variant v : CudaBackend.Variant.values()) {
        float[] disp = new float[7];
        float[] comb = new float[7];
        for (int i = 0; i < disp.length; i++) {
          var res = be.dispatch(v);
          disp[i] = be.lastDeviceMs();
          if (i == 0) {
            bytes = 0;
            for (int d = 0; d < pb.ranks(); d++) {
              be.setExpertOutputs(d, KernelCases.randomRows(rnd, res[d].rows(), 7168, DType.BF16));
              bytes += (long) res[d].rows() * 7168 * 2;
            }
          } else {
            for (int d = 0; d < pb.ranks(); d++) {
              be.setExpertOutputs(d, new byte[res[d].rows() * 7168 * 2]);
            }
          }
          be.combine(v);
          comb[i] = be.lastDeviceMs();
        }
        Arrays.sort(disp);
        Arrays.sort(comb);
        assertTrue(disp[3] > 0 && comb[3] > 0, v + " timings " + disp[3] + " / " + comb[3]);
        System.out.printf("timing %s: dispatch %.3f ms, combine %.3f ms (median of 7; %d received row bytes)%n",
            v, disp[3], comb[3], bytes);
      }
      System.out.printf("timing copy of %d bytes: %.3f ms%n", bytes, be.copyMillis(bytes, 7));
    }
  }

  @Test
  void badInputIsRejectedBeforeAnyKernel() {
    var cfg = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
    try (CudaBackend be = CudaBackend.open(cfg.map(), cfg.comm())) {
      byte[] x = new byte[2 * cfg.rowBytes()];
      float[] w = new float[4];
      assertThrows(IllegalArgumentException.class,
          () -> be.upload(0, new CudaBackend.RankInput(2, x, null, new int[] {0, 4, 1, 2}, w)));
      assertThrows(IllegalArgumentException.class,
          () -> be.upload(0, new CudaBackend.RankInput(2, x, null, new int[] {1, 1, 0, 2}, w)));
      assertThrows(IllegalStateException.class, () -> be.dispatch(CudaBackend.Variant.FUSED));
    }
  }

  @Test
  void moreRowsThanTheReceiveBufferFailsBeforeAnyKernelWrites() {
    // every token of both ranks to expert 0: rank 0 receives 2 x 8 rows, its buffer holds 10
    ExpertMap map = ExpertMap.trivial(io.moeyard.engine.Topology.singleNode(2), 4);
    CommConfig comm = CommConfig.of(8, 128, 1, DType.BF16, DType.BF16).withReceiveRows(10);
    SplittableRandom rnd = new SplittableRandom(1);
    try (CudaBackend be = CudaBackend.open(map, comm)) {
      assertEquals(10, be.receiveCapacity());
      byte[] x = KernelCases.randomRows(rnd, 8, 128, DType.BF16);
      for (int r = 0; r < 2; r++) {
        be.upload(r, new CudaBackend.RankInput(8, x, null, new int[8], new float[] {1, 1, 1, 1, 1, 1, 1, 1}));
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> be.dispatch(CudaBackend.Variant.FUSED));
      assertTrue(e.getMessage().contains("rank 0 would receive 16 rows, its receive buffer holds 10"), e.getMessage());
      assertThrows(IllegalStateException.class, () -> be.combine(CudaBackend.Variant.FUSED));
      // a routing that fits runs on the same buffers
      int[] spread = {0, 1, 2, 3, 0, 1, 2, 3};
      for (int r = 0; r < 2; r++) {
        be.upload(r, new CudaBackend.RankInput(8, x, null, spread, new float[] {1, 1, 1, 1, 1, 1, 1, 1}));
      }
      CudaBackend.DispatchResult[] got = be.dispatch(CudaBackend.Variant.FUSED);
      assertEquals(8, got[0].rows());
      assertEquals(8, got[1].rows());
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** Both variants: dispatch equals the reference; combine equals the reference; fused == unfused. */
  private static void check(Workload wl) {
    int ranks = wl.ranks();
    String ctx = wl.toString();
    CudaBackend.DispatchResult[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    try (CudaBackend be = KernelCases.openAndUpload(wl)) {
      for (CudaBackend.Variant v : CudaBackend.Variant.values()) {
        CudaBackend.DispatchResult[] got = be.dispatch(v);
        for (int d = 0; d < ranks; d++) {
          String at = v + " rank " + d + " " + ctx;
          assertEquals(want[d].rows(), got[d].rows(), "rows " + at);
          assertArrayEquals(want[d].slotCounts(), got[d].slotCounts(), "slot counts " + at);
          assertArrayEquals(want[d].recvX(), got[d].recvX(), "recvX " + at);
          assertArrayEquals(want[d].recvWeights(), got[d].recvWeights(), "recvWeights " + at);
          assertArrayEquals(want[d].recvScales(), got[d].recvScales(), "recvScales " + at);
          if (v == CudaBackend.Variant.FUSED) {
            assertArrayEquals(want[d].pairSrc(), got[d].pairSrc(), "pair sources " + at);
            assertArrayEquals(want[d].pairToken(), got[d].pairToken(), "pair tokens " + at);
          }
          // rank d's own layout as a source (DeepEP get_dispatch_layout outputs)
          assertArrayEquals(want[d].numTokensPerRank(), got[d].numTokensPerRank(), "numTokensPerRank " + at);
          assertArrayEquals(want[d].isTokenInRank(), got[d].isTokenInRank(), "isTokenInRank " + at);
        }
        for (int d = 0; d < ranks; d++) {
          be.setExpertOutputs(d, wl.y[d]);
        }
        byte[][] out = be.combine(v);
        for (int r = 0; r < ranks; r++) {
          assertArrayEquals(wantOut[r], out[r], "combine " + v + " rank " + r + " " + ctx);
        }
      }
    }
  }
}
