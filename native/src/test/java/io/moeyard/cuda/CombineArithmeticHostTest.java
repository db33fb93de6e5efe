package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The combine arithmetic of arith.cuh (the functions the combine kernels call), run on the host
 * token by token, against the kit's {@link NaiveReference}. Bit for bit, except that two NaNs count
 * as equal: NaN payloads are not part of the contract (GPU arithmetic returns the canonical NaN
 * whatever the operands, x86 propagates an operand's payload, and Java's own FP16 NaN bits differ
 * between interpreted and compiled code). Infinities, signed zeros and NaN inputs are exercised
 * (mode 4).
 */
class CombineArithmeticHostTest {

  @BeforeEach
  void library() {
    NativeTestSupport.requireLibrary();
  }

  /**
   * One token with {@code groups[g]} rows on rank g: the kit's combine of that token, a workload
   * of its own (rank g holds 4 slots; the token's rows there are its first {@code groups[g]}).
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void tokenCombineMatchesTheReference(DType dt) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int iter = 0; iter < 400; iter++) {
      int h = 1 + rnd.nextInt(70);
      int nGroups = rnd.nextInt(9); // 0 = a token routed nowhere: output 0
      int[] groups = new int[nGroups];
      int rows = 0;
      for (int g = 0; g < nGroups; g++) {
        groups[g] = 1 + rnd.nextInt(4);
        rows += groups[g];
      }
      int ranks = Math.max(1, nGroups);
      int topk = Math.max(1, rows);
      int[] idx = new int[topk];
      Arrays.fill(idx, -1);
      for (int g = 0, k = 0; g < nGroups; g++) for (int i = 0; i < groups[g]; i++) idx[k++] = 4 * g + i;
      int[] tokens = new int[ranks];
      tokens[0] = 1;
      int[][] routing = new int[ranks][0];
      routing[0] = idx;
      Workload wl = Workload.of(ExpertMap.trivial(Topology.singleNode(ranks), 4 * ranks), topk, h, dt, tokens, routing, rnd.nextLong());
      int mode = rnd.nextInt(5);
      RowBuffer[] y = wl.ys();
      ByteArrayOutputStream all = new ByteArrayOutputStream();
      for (int g = 0; g < nGroups; g++) {
        for (int i = 0; i < groups[g]; i++) {
          for (int c = 0; c < h; c++) y[g].setFloat(i, c, value(rnd, mode, dt));
        }
        all.writeBytes(KernelCases.bytes(y[g]));
      }
      float[] w = new float[topk];
      for (int i = 0; i < rows; i++) w[i] = mode == 3 ? (rnd.nextInt(8) + 1) / 8f : rnd.nextFloat() * 3f - 1f;
      RowBuffer want = wl.ref.combined(0, w, y, dt);
      byte[] got = NativeKernels.hostCombineToken(KernelShape.code(dt), all.toByteArray(), Arrays.copyOf(w, rows), groups, h);
      byte[] wantBytes = KernelCases.bytes(want);
      assertEquals(wantBytes.length, got.length);
      if (!Arrays.equals(wantBytes, got)) {
        RowBuffer have = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(got), 0, 1, h, dt, null);
        for (int c = 0; c < h; c++) {
          float a = want.getFloat(0, c);
          float b = have.getFloat(0, c);
          if (Float.floatToIntBits(a) != Float.floatToIntBits(b) && !(Float.isNaN(a) && Float.isNaN(b))) {
            fail(seed + ": " + dt + " channel " + c + ": want " + a + " got " + b + " (mode " + mode + ", groups "
                + Arrays.toString(groups) + ")");
          }
        }
      }
    }
  }

  private static float value(SplittableRandom rnd, int mode, DType dt) {
    return switch (mode) {
      case 0 -> rnd.nextFloat() * 4f - 2f;
      case 1 -> (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
      case 2 -> dt == DType.FP16 ? (rnd.nextFloat() * 2f - 1f) * 65504f // overflow to inf
          : (float) ((rnd.nextFloat() * 2 - 1) * Math.pow(2, rnd.nextInt(250) - 125));
      case 3 -> (rnd.nextInt(3) - 1) * (1f + rnd.nextInt(4) / 256f); // ties for rounding
      default -> switch (rnd.nextInt(6)) { // specials: NaN payloads, infinities, signed zeros
        case 0 -> Float.intBitsToFloat((rnd.nextBoolean() ? 0x7F800000 : 0xFF800000) | (1 + rnd.nextInt(0x7FFFFF)));
        case 1 -> rnd.nextBoolean() ? Float.POSITIVE_INFINITY : Float.NEGATIVE_INFINITY;
        case 2 -> -0.0f;
        default -> rnd.nextFloat() * 4f - 2f;
      };
    };
  }

  /** Every token of the suite's random workloads: the native arithmetic over its rows equals the reference's combine. */
  @Test
  void everyTokenOfRandomWorkloadsMatchesTheReference() {
    TestSeed seed = TestSeed.fresh();
    for (int iter = 0; iter < 30; iter++) {
      Workload wl = Workload.random(seed.value() + iter, 30);
      seed.check(() -> {
        NaiveReference ref = wl.ref;
        RowBuffer[] y = wl.ys();
        int h = wl.hidden;
        int spr = wl.map.slotsPerRank();
        for (int r = 0; r < wl.ranks(); r++) {
          byte[] want = KernelCases.bytes(ref.combined(r, wl.w[r], y, wl.outType));
          int rowBytes = h * wl.outType.bytes();
          for (int t = 0; t < wl.tokens[r]; t++) {
            // the token's rows grouped by destination rank, slots ascending within
            ByteArrayOutputStream rows = new ByteArrayOutputStream();
            List<Float> w = new ArrayList<>();
            List<Integer> groups = new ArrayList<>();
            for (int d : ref.destinations(r, t)) {
              int n = 0;
              for (int p = d * spr; p < (d + 1) * spr; p++) {
                for (int k = 0; k < wl.topk; k++) {
                  if (ref.slot(r, t, k) == p) {
                    rows.write(wl.y[d], ref.row(r, t, k) * rowBytes, rowBytes);
                    w.add(wl.w[r][t * wl.topk + k]);
                    n++;
                  }
                }
              }
              groups.add(n);
            }
            float[] wa = new float[w.size()];
            for (int i = 0; i < wa.length; i++) wa[i] = w.get(i);
            byte[] got = NativeKernels.hostCombineToken(KernelShape.code(wl.outType), rows.toByteArray(), wa,
                groups.stream().mapToInt(Integer::intValue).toArray(), h);
            assertArrayEquals(Arrays.copyOfRange(want, t * rowBytes, (t + 1) * rowBytes), got, wl + " rank " + r + " token " + t);
          }
        }
      });
    }
  }
}
