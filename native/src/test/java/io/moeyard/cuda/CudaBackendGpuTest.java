package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Dispatch and combine on the GPU (R virtual ranks on one device) against the naive
 * {@link Reference}, bit for bit, fused and unfused. Skipped with "CUDA backend unavailable:
 * &lt;reason&gt;" where there is no GPU (here, CI).
 */
class CudaBackendGpuTest {

  @BeforeEach
  void gpu() {
    NativeTestSupport.requireGpu();
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void dispatchAndCombineMatchReference(DType dtype) {
    Random rnd = new Random(NativeTestSupport.seed("dispatchAndCombineMatchReference " + dtype));
    for (int iter = 0; iter < 12; iter++) {
      int ranks = 1 + rnd.nextInt(8);
      int local = rnd.nextBoolean() ? ranks : 1;
      int s = 1 + rnd.nextInt(4);
      int experts = 1 + rnd.nextInt(ranks * s);
      int k = 1 + rnd.nextInt(Math.min(experts, 8));
      int hidden = dtype == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(3))
          : new int[] {128, 256, 7 * 128, 100, 36, 33}[rnd.nextInt(6)];
      var pb = Reference.randomProblem(rnd, ranks, local, s, experts, k, hidden, dtype, 300, 0.1);
      check(pb, rnd);
    }
  }

  @Test
  void emptyRanksTopk1AndOneHotExpert() {
    Random rnd = new Random(NativeTestSupport.seed("emptyRanksTopk1AndOneHotExpert"));
    // zero tokens everywhere
    check(Reference.randomProblem(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0), rnd);
    // top-k 1
    check(Reference.randomProblem(rnd, 4, 4, 2, 8, 1, 256, DType.FP16, 500, 0.0), rnd);
    // all -1
    check(Reference.randomProblem(rnd, 2, 2, 2, 4, 3, 128, DType.FP32, 50, 1.0), rnd);
    // all tokens of all ranks to expert 0, and ranks 1..3 receive nothing
    var cfg = Reference.trivial(4, 4, 2, 256, 1, DType.BF16);
    int[] tokens = {700, 0, 3, 129};
    check(Reference.routed(cfg, tokens, (r, t, j) -> 0, rnd), rnd);
    // a rank that receives nothing (experts 6, 7 on rank 3 never chosen), top-k 3
    var cfg2 = Reference.trivial(4, 2, 2, 128, 3, DType.FP32);
    check(Reference.routed(cfg2, new int[] {64, 65, 0, 1}, (r, t, j) -> (t + 2 * j + r) % 6, rnd), rnd);
  }

  @Test
  void deepSeekShapeSmall() {
    Random rnd = new Random(NativeTestSupport.seed("deepSeekShapeSmall"));
    // 8 ranks, 256 experts + 32 redundant slots (S = 36), top-8, hidden 7168, BF16 and FP8
    for (DType dt : new DType[] {DType.BF16, DType.FP8_E4M3}) {
      var pb = Reference.randomProblem(rnd, 8, 8, 36, 256, 8, 7168, dt, 96, 0.0);
      check(pb, rnd);
    }
  }

  @Test
  void asyncFormsGiveTheSameResults() throws Exception {
    Random rnd = new Random(NativeTestSupport.seed("asyncFormsGiveTheSameResults"));
    var pb = Reference.randomProblem(rnd, 4, 4, 3, 10, 3, 256, DType.BF16, 200, 0.05);
    try (CudaBackend be = CudaBackend.open(pb.cfg().map(), pb.cfg().comm())) {
      for (int r = 0; r < pb.ranks(); r++) {
        be.upload(r, pb.input(r));
      }
      var sync = be.dispatch(CudaBackend.Variant.FUSED);
      var async = be.dispatchAsync(CudaBackend.Variant.FUSED).get();
      byte[][] y = new byte[pb.ranks()][];
      for (int d = 0; d < pb.ranks(); d++) {
        assertArrayEquals(sync[d].recvX(), async[d].recvX());
        y[d] = Reference.randomRows(rnd, (long) async[d].rows() * pb.cfg().hidden(), DType.BF16);
        be.setExpertOutputs(d, y[d]);
      }
      byte[][] out = be.combineAsync(CudaBackend.Variant.FUSED).get();
      byte[][] want = Reference.combine(pb, y);
      for (int r = 0; r < pb.ranks(); r++) {
        assertArrayEquals(want[r], out[r], "rank " + r);
      }
    }
  }

  /** Not a benchmark: checks that timings are reported, and prints them for the GPU run's log. */
  @Test
  void timingsAreReported() {
    Random rnd = new Random(NativeTestSupport.seed("timingsAreReported"));
    var pb = Reference.randomProblem(rnd, 8, 8, 32, 256, 8, 7168, DType.BF16, 512, 0.0);
    try (CudaBackend be = CudaBackend.open(pb.cfg().map(), pb.cfg().comm())) {
      for (int r = 0; r < pb.ranks(); r++) {
        be.upload(r, pb.input(r));
      }
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
              be.setExpertOutputs(d, Reference.randomRows(rnd, (long) res[d].rows() * 7168, DType.BF16));
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
    var cfg = Reference.trivial(2, 2, 2, 128, 2, DType.BF16);
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
    Random rnd = new Random(1);
    try (CudaBackend be = CudaBackend.open(map, comm)) {
      assertEquals(10, be.receiveCapacity());
      byte[] x = Reference.randomRows(rnd, 8 * 128, DType.BF16);
      for (int r = 0; r < 2; r++) {
        be.upload(r, new CudaBackend.RankInput(8, x, null, new int[8], Reference.randomWeights(rnd, 8)));
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> be.dispatch(CudaBackend.Variant.FUSED));
      assertTrue(e.getMessage().contains("rank 0 would receive 16 rows, its receive buffer holds 10"), e.getMessage());
      assertThrows(IllegalStateException.class, () -> be.combine(CudaBackend.Variant.FUSED));
      // a routing that fits runs on the same buffers
      int[] spread = {0, 1, 2, 3, 0, 1, 2, 3};
      for (int r = 0; r < 2; r++) {
        be.upload(r, new CudaBackend.RankInput(8, x, null, spread, Reference.randomWeights(rnd, 8)));
      }
      CudaBackend.DispatchResult[] got = be.dispatch(CudaBackend.Variant.FUSED);
      assertEquals(8, got[0].rows());
      assertEquals(8, got[1].rows());
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** Both variants: dispatch equals the reference; combine equals the reference; fused == unfused. */
  private static void check(Reference.Problem pb, Random rnd) {
    var c = pb.cfg();
    int ranks = pb.ranks();
    String ctx = "R=" + ranks + " S=" + c.slotsPerRank() + " K=" + c.topk() + " H=" + c.hidden() + " "
        + c.dispatchType() + " tokens=" + Arrays.toString(pb.tokens());
    Reference.DispatchOut[] want = Reference.dispatch(pb);
    byte[][] y = new byte[ranks][];
    for (int d = 0; d < ranks; d++) {
      y[d] = Reference.randomRows(rnd, (long) want[d].rows() * c.hidden(), c.combineType());
    }
    byte[][] wantOut = Reference.combine(pb, y);
    try (CudaBackend be = CudaBackend.open(c.map(), c.comm())) {
      for (int r = 0; r < ranks; r++) {
        be.upload(r, pb.input(r));
      }
      for (CudaBackend.Variant v : CudaBackend.Variant.values()) {
        CudaBackend.DispatchResult[] got = be.dispatch(v);
        for (int d = 0; d < ranks; d++) {
          String at = v + " rank " + d + " " + ctx;
          assertEquals(want[d].rows(), got[d].rows(), "rows " + at);
          assertArrayEquals(want[d].slotCounts(), got[d].slotCounts(), "slot counts " + at);
          assertArrayEquals(want[d].recvX(), got[d].recvX(), "recvX " + at);
          assertArrayEquals(want[d].recvW(), got[d].recvWeights(), "recvWeights " + at);
          assertArrayEquals(want[d].recvScales(), got[d].recvScales(), "recvScales " + at);
          if (v == CudaBackend.Variant.FUSED) {
            assertArrayEquals(want[d].pairSrc(), got[d].pairSrc(), "pair sources " + at);
            assertArrayEquals(want[d].pairToken(), got[d].pairToken(), "pair tokens " + at);
          }
          // rank d's own layout as a source (DeepEP get_dispatch_layout outputs)
          int[] ids = Reference.slotIds(c, d, pb.topkIdx()[d]);
          int[] perRank = new int[ranks];
          byte[] inRank = new byte[pb.tokens()[d] * ranks];
          for (int t = 0; t < pb.tokens()[d]; t++) {
            for (int dest : Reference.destRanks(ids, c.topk(), c.slotsPerRank(), t)) {
              perRank[dest]++;
              inRank[t * ranks + dest] = 1;
            }
          }
          assertArrayEquals(perRank, got[d].numTokensPerRank(), "numTokensPerRank " + at);
          assertArrayEquals(inRank, got[d].isTokenInRank(), "isTokenInRank " + at);
        }
        for (int d = 0; d < ranks; d++) {
          be.setExpertOutputs(d, y[d]);
        }
        byte[][] out = be.combine(v);
        for (int r = 0; r < ranks; r++) {
          assertArrayEquals(wantOut[r], out[r], "combine " + v + " rank " + r + " " + ctx);
        }
      }
    }
  }
}
