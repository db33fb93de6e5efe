package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.DType;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Checks the test oracle itself on the host, so that a GPU run is not spent on a wrong reference:
 * DeepEP-style identities for dispatch / combine, and the reference combine against the native
 * combine arithmetic token by token.
 */
class ReferenceSelfTest {

  @Test
  void dispatchDeliversEverySelectionOnce() {
    Random rnd = new Random(NativeTestSupport.seed("dispatchDeliversEverySelectionOnce"));
    for (int iter = 0; iter < 40; iter++) {
      int ranks = 1 + rnd.nextInt(6);
      int s = 1 + rnd.nextInt(4);
      int experts = 1 + rnd.nextInt(ranks * s);
      int k = 1 + rnd.nextInt(Math.min(experts, 8));
      var pb = Reference.randomProblem(rnd, ranks, 1, s, experts, k, 8, DType.FP32, 60, 0.1);
      var out = Reference.dispatch(pb);
      int selections = 0;
      for (int r = 0; r < ranks; r++) {
        for (int e : pb.topkIdx()[r]) {
          selections += e >= 0 ? 1 : 0;
        }
      }
      int rows = 0;
      for (int d = 0; d < ranks; d++) {
        rows += out[d].rows();
        assertEquals(out[d].rows(), Arrays.stream(out[d].slotCounts()).sum());
        // pairs are rank-major, tokens ascending
        for (int i = 1; i < out[d].pairSrc().length; i++) {
          int a = out[d].pairSrc()[i - 1];
          int b = out[d].pairSrc()[i];
          assertEquals(true, a < b || (a == b && out[d].pairToken()[i - 1] < out[d].pairToken()[i]));
        }
      }
      assertEquals(selections, rows);
    }
  }

  /** Identity experts, weight 1, top-1, FP32: combine(dispatch(x)) == x (0 for unrouted tokens). */
  @Test
  void identityRoundTrip() {
    Random rnd = new Random(NativeTestSupport.seed("identityRoundTrip"));
    var cfg = Reference.trivial(4, 2, 3, 16, 1, DType.FP32);
    var base = Reference.randomProblem(rnd, 4, 2, 3, 12, 1, 16, DType.FP32, 50, 0.2);
    float[][] ones = new float[4][];
    for (int r = 0; r < 4; r++) {
      ones[r] = new float[base.tokens()[r]];
      Arrays.fill(ones[r], 1f);
    }
    var pb = new Reference.Problem(cfg, base.tokens(), base.topkIdx(), ones, base.x(), base.scales());
    var d = Reference.dispatch(pb);
    byte[][] y = new byte[4][];
    for (int r = 0; r < 4; r++) {
      y[r] = d[r].recvX();
    }
    byte[][] out = Reference.combine(pb, y);
    for (int r = 0; r < 4; r++) {
      float[] x = Reference.decode(pb.x()[r], DType.FP32);
      float[] o = Reference.decode(out[r], DType.FP32);
      for (int t = 0; t < pb.tokens()[r]; t++) {
        boolean routed = pb.topkIdx()[r][t] >= 0;
        for (int c = 0; c < 16; c++) {
          assertEquals(routed ? x[t * 16 + c] : 0f, o[t * 16 + c]);
        }
      }
    }
  }

  /** The reference combine equals the native arithmetic (arith.cuh) token by token. */
  @Test
  void referenceCombineEqualsNativeArithmetic() {
    NativeTestSupport.requireLibrary();
    Random rnd = new Random(NativeTestSupport.seed("referenceCombineEqualsNativeArithmetic"));
    for (DType dt : new DType[] {DType.BF16, DType.FP16, DType.FP32}) {
      for (int iter = 0; iter < 10; iter++) {
        int ranks = 1 + rnd.nextInt(5);
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 8));
        int h = 1 + rnd.nextInt(40);
        var pb = Reference.randomProblem(rnd, ranks, 1, s, experts, k, h, dt, 30, 0.1);
        var c = pb.cfg();
        var disp = Reference.dispatch(pb);
        byte[][] y = new byte[ranks][];
        for (int d = 0; d < ranks; d++) {
          y[d] = Reference.randomRows(rnd, (long) disp[d].rows() * h, dt);
        }
        byte[][] want = Reference.combine(pb, y);
        int eb = dt.bytes();
        for (int r = 0; r < ranks; r++) {
          int[] ids = Reference.slotIds(c, r, pb.topkIdx()[r]);
          int[][] rows = Reference.recvRows(ranks, s, k, pb.tokens(), allIds(pb));
          for (int t = 0; t < pb.tokens()[r]; t++) {
            ByteArrayOutputStream yb = new ByteArrayOutputStream();
            List<Float> w = new ArrayList<>();
            List<Integer> groups = new ArrayList<>();
            for (int d : Reference.destRanks(ids, k, s, t)) {
              int n = 0;
              for (int ls = 0; ls < s; ls++) {
                for (int j = 0; j < k; j++) {
                  if (ids[t * k + j] == d * s + ls) {
                    yb.write(y[d], rows[r][t * k + j] * h * eb, h * eb);
                    w.add(pb.topkW()[r][t * k + j]);
                    n++;
                  }
                }
              }
              groups.add(n);
            }
            float[] wa = new float[w.size()];
            for (int i = 0; i < wa.length; i++) {
              wa[i] = w.get(i);
            }
            byte[] got = NativeKernels.hostCombineToken(KernelShape.code(dt), yb.toByteArray(), wa,
                groups.stream().mapToInt(Integer::intValue).toArray(), h);
            assertArrayEquals(Arrays.copyOfRange(want[r], t * h * eb, (t + 1) * h * eb), got,
                dt + " rank " + r + " token " + t);
          }
        }
      }
    }
  }

  private static int[][] allIds(Reference.Problem pb) {
    int[][] ids = new int[pb.ranks()][];
    for (int r = 0; r < pb.ranks(); r++) {
      ids[r] = Reference.slotIds(pb.cfg(), r, pb.topkIdx()[r]);
    }
    return ids;
  }
}
