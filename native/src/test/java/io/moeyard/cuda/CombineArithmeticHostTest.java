package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Numerics;
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
   * One token with {@code groups[g]} rows on rank g of one node: the kit's combine of that token, a
   * workload of its own (rank g holds 4 slots; the token's rows there are its first {@code groups[g]}).
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
      int[] groupRanks = java.util.stream.IntStream.range(0, nGroups).toArray();
      byte[] got = NativeKernels.hostCombineToken(KernelShape.code(dt), all.toByteArray(), Arrays.copyOf(w, rows), groups,
          groupRanks, ranks, ranks, h);
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

  static float value(SplittableRandom rnd, int mode, DType dt) {
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

  /**
   * Every token of the suite's random workloads (nodes x local ranks of every shape): the native
   * arithmetic over its rows equals {@link #contractCombine}, and on one node the reference's
   * combine as well.
   */
  @Test
  void everyTokenOfRandomWorkloadsMatchesTheContract() {
    TestSeed seed = TestSeed.fresh();
    int multiNode = 0;
    for (int iter = 0; iter < 40; iter++) {
      Workload wl = Workload.random(seed.value() + iter, 30);
      Topology topo = wl.map.topology();
      if (topo.nodes() > 1) multiNode++;
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
            List<float[]> values = new ArrayList<>();
            List<Float> w = new ArrayList<>();
            List<Integer> groups = new ArrayList<>();
            List<Integer> groupRanks = new ArrayList<>();
            for (int d : ref.destinations(r, t)) {
              int n = 0;
              for (int p = d * spr; p < (d + 1) * spr; p++) {
                for (int k = 0; k < wl.topk; k++) {
                  if (ref.slot(r, t, k) == p) {
                    int row = ref.row(r, t, k);
                    rows.write(wl.y[d], row * rowBytes, rowBytes);
                    float[] v = new float[h];
                    for (int c = 0; c < h; c++) v[c] = y[d].getFloat(row, c);
                    values.add(v);
                    w.add(wl.w[r][t * wl.topk + k]);
                    n++;
                  }
                }
              }
              groups.add(n);
              groupRanks.add(d);
            }
            float[] wa = new float[w.size()];
            for (int i = 0; i < wa.length; i++) wa[i] = w.get(i);
            int[] ga = groups.stream().mapToInt(Integer::intValue).toArray();
            int[] gr = groupRanks.stream().mapToInt(Integer::intValue).toArray();
            byte[] got = NativeKernels.hostCombineToken(KernelShape.code(wl.outType), rows.toByteArray(), wa, ga, gr,
                topo.worldSize(), topo.localRanks(), h);
            String ctx = wl + " rank " + r + " token " + t;
            float[] rule = contractCombine(values.toArray(new float[0][]), wa, ga, gr, topo, wl.outType);
            String diff = firstDifference(rule, got, wl.outType);
            if (diff != null) fail(ctx + ": vs the contract's loop: " + diff);
            assertArrayEquals(Arrays.copyOfRange(want, t * rowBytes, (t + 1) * rowBytes), got, ctx + " vs the reference");
          }
        }
      });
    }
    System.out.println("CombineArithmeticHostTest: " + multiNode + " of 40 random workloads on more than one node");
  }

  /**
   * Tokens on topologies of 1..4 nodes x 1..4 ranks, with rows on a random set of ranks: the native
   * arithmetic equals {@link #contractCombine}. The two rules must also tell apart: on more than
   * one node some tokens' one-level sums differ from the two-level ones, else this test could not
   * catch a kernel that ignores nodes.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void tokenCombineOnNodesMatchesTheContract(DType dt) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int differs = 0;
    for (int iter = 0; iter < 600; iter++) {
      Topology topo = new Topology(1 + rnd.nextInt(4), 1 + rnd.nextInt(4));
      int ranks = topo.worldSize();
      int h = 1 + rnd.nextInt(40);
      Token tk = Token.random(rnd, ranks, h, dt, iter % 50 == 0);
      byte[] got = NativeKernels.hostCombineToken(KernelShape.code(dt), tk.bytes(), tk.w(), tk.groups(), tk.gr(), ranks,
          topo.localRanks(), h);
      float[] want = contractCombine(tk.values(), tk.w(), tk.groups(), tk.gr(), topo, dt);
      String diff = firstDifference(want, got, dt);
      if (diff != null) fail(seed + ": " + dt + " " + topo + " " + tk + ": " + diff);
      if (topo.nodes() > 1 && firstDifference(
          contractCombine(tk.values(), tk.w(), tk.groups(), tk.gr(), Topology.singleNode(ranks), dt), got, dt) != null) {
        differs++;
      }
    }
    assertTrue(differs > 0, seed + ": no multi-node token came out different from the one-level sum");
  }

  /**
   * One token's partial rows as a combine sees them: the ranks it was sent to ({@code gr}, some
   * ranks getting nothing, or none at all when {@code nowhere}), its rows per rank, their values
   * (raw bytes and as read back), weights, and the value mode they were drawn in.
   */
  record Token(int[] gr, int[] groups, byte[] bytes, float[][] values, float[] w, int mode) {
    static Token random(SplittableRandom rnd, int ranks, int h, DType dt, boolean nowhere) {
      int mode = rnd.nextInt(5);
      List<Integer> dests = new ArrayList<>();
      for (int d = 0; d < ranks; d++) if (rnd.nextInt(3) > 0) dests.add(d);
      if (nowhere) dests.clear();
      int[] gr = dests.stream().mapToInt(Integer::intValue).toArray();
      int[] groups = new int[gr.length];
      int rows = 0;
      for (int g = 0; g < groups.length; g++) rows += groups[g] = 1 + rnd.nextInt(4);
      byte[] bytes = new byte[rows * h * dt.bytes()];
      RowBuffer y = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(bytes), 0, rows, h, dt, null);
      float[][] values = new float[rows][h];
      for (int i = 0; i < rows; i++) {
        for (int c = 0; c < h; c++) {
          y.setFloat(i, c, value(rnd, mode, dt));
          values[i][c] = y.getFloat(i, c);
        }
      }
      float[] w = new float[rows];
      for (int i = 0; i < rows; i++) w[i] = mode == 3 ? (rnd.nextInt(8) + 1) / 8f : rnd.nextFloat() * 3f - 1f;
      return new Token(gr, groups, bytes, values, w, mode);
    }

    @Override
    public String toString() {
      return "ranks " + Arrays.toString(gr) + " groups " + Arrays.toString(groups) + " mode " + mode;
    }
  }

  /**
   * The home kernel's own code ({@code warp_sum_rows} as the launcher instantiates it: one node,
   * or by node with half the column vectors), run on the host lane by lane: a token's partials on
   * random ranks of 1..4 nodes x 1..4 ranks equal {@link #contractCombine}'s home sum, for hidden
   * sizes up to past two column blocks, multiples of the vector width and not.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void homeKernelBodyMatchesTheContract(DType dt) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int vec = 16 / dt.bytes();
    for (int iter = 0; iter < 200; iter++) {
      Topology topo = new Topology(1 + rnd.nextInt(4), 1 + rnd.nextInt(4));
      int ranks = topo.worldSize();
      int h = rnd.nextBoolean() ? vec * (1 + rnd.nextInt(2100 / vec)) : 1 + rnd.nextInt(2100);
      int mode = rnd.nextInt(5);
      List<Integer> dests = new ArrayList<>();
      for (int d = 0; d < ranks; d++) if (rnd.nextInt(3) > 0) dests.add(d);
      int[] gr = dests.stream().mapToInt(Integer::intValue).toArray();
      int n = gr.length;
      // the partials, with a spare row in front so that row indices are not just 0..n-1
      byte[] bytes = new byte[(n + 1) * h * dt.bytes()];
      RowBuffer y = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(bytes), 0, n + 1, h, dt, null);
      float[][] values = new float[n][h];
      for (int i = 0; i < n; i++) {
        for (int c = 0; c < h; c++) {
          y.setFloat(i + 1, c, value(rnd, mode, dt));
          values[i][c] = y.getFloat(i + 1, c);
        }
      }
      int[] rows = java.util.stream.IntStream.rangeClosed(1, n).toArray();
      long mask = 0;
      for (int d : gr) mask |= 1L << d;
      boolean nodes = topo.nodes() > 1;
      long ends = nodes ? NativeKernels.hostNodeRunEnds(mask, ranks, topo.localRanks()) : 0;
      byte[] got = NativeKernels.hostWarpSumRows(KernelShape.code(dt), bytes, rows, null, h, ends, nodes);
      // a partial is a pair of one row of weight 1: 0 + 1 * p is p, rounding it changes nothing
      float[] ones = new float[n];
      Arrays.fill(ones, 1f);
      int[] single = new int[n];
      Arrays.fill(single, 1);
      float[] want = contractCombine(values, ones, single, gr, topo, dt);
      String diff = firstDifference(want, got, dt);
      if (diff != null) fail(seed + ": " + dt + " " + topo + " ranks " + Arrays.toString(gr) + " hidden " + h + " mode " + mode + ": " + diff);
    }
  }

  /**
   * The fused combine kernel's own pair sum ({@code warp_sum_rows}, weighted) on the host, lane by
   * lane: 1..16 rows picked from a block, in their order, equal the contract's pair partial.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void pairKernelBodyMatchesTheContract(DType dt) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int vec = 16 / dt.bytes();
    for (int iter = 0; iter < 200; iter++) {
      int h = rnd.nextBoolean() ? vec * (1 + rnd.nextInt(2100 / vec)) : 1 + rnd.nextInt(2100);
      int mode = rnd.nextInt(5);
      int m = 1 + rnd.nextInt(20);
      int n = 1 + rnd.nextInt(Math.min(16, m));
      byte[] bytes = new byte[m * h * dt.bytes()];
      RowBuffer y = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(bytes), 0, m, h, dt, null);
      for (int i = 0; i < m; i++) for (int c = 0; c < h; c++) y.setFloat(i, c, value(rnd, mode, dt));
      int[] rows = rnd.ints(0, m).distinct().limit(n).sorted().toArray();
      n = rows.length;
      float[][] values = new float[n][h];
      for (int i = 0; i < n; i++) for (int c = 0; c < h; c++) values[i][c] = y.getFloat(rows[i], c);
      float[] w = new float[n];
      for (int i = 0; i < n; i++) w[i] = mode == 3 ? (rnd.nextInt(8) + 1) / 8f : rnd.nextFloat() * 3f - 1f;
      byte[] got = NativeKernels.hostWarpSumRows(KernelShape.code(dt), bytes, rows, w, h, 0, false);
      float[] want = new float[h];
      for (int c = 0; c < h; c++) want[c] = contractPair(values, w, 0, n, c, dt);
      String diff = firstDifference(want, got, dt);
      if (diff != null) fail(seed + ": " + dt + " rows " + Arrays.toString(rows) + " hidden " + h + " mode " + mode + ": " + diff);
    }
  }

  @Test
  void badTokenArgumentsThrow() {
    int bf16 = KernelShape.code(DType.BF16);
    byte[] y = new byte[2 * 2];
    float[] w = {1f, 1f};
    int[] groups = {1, 1};
    assertThrows(IllegalArgumentException.class, // ranks not ascending
        () -> NativeKernels.hostCombineToken(bf16, y, w, groups, new int[] {1, 0}, 4, 2, 1));
    assertThrows(IllegalArgumentException.class, // a rank outside the world
        () -> NativeKernels.hostCombineToken(bf16, y, w, groups, new int[] {0, 4}, 4, 2, 1));
    assertThrows(IllegalArgumentException.class, // 3 ranks per node do not divide 4
        () -> NativeKernels.hostCombineToken(bf16, y, w, groups, new int[] {0, 1}, 4, 3, 1));
    assertThrows(IllegalArgumentException.class, // one rank per group
        () -> NativeKernels.hostCombineToken(bf16, y, w, groups, new int[] {0}, 4, 2, 1));
    assertThrows(IllegalArgumentException.class, // a row outside y
        () -> NativeKernels.hostWarpSumRows(bf16, y, new int[] {0, 2}, null, 1, 0, false));
    assertThrows(IllegalArgumentException.class, // weights with the node fold
        () -> NativeKernels.hostWarpSumRows(bf16, y, new int[] {0, 1}, w, 1, 1, true));
  }

  /**
   * The contract's combine of one token (shuffle-engine/docs/data-path.md, "Combine"), written as
   * plainly as it reads: {@code rows[i]} are the token's row values in summation order, pair g holds
   * {@code groups[g]} consecutive rows and lives on rank {@code groupRanks[g]} (ascending). Each
   * pair partial is its rows' weighted float sum, rounded; on one node the output is the pair
   * partials' float sum, rounded; on more, each node (ascending) that holds pairs sums its pair
   * partials in float and rounds, and the output is those node partials' float sum, rounded. Sums
   * start from 0.
   */
  static float[] contractCombine(float[][] rows, float[] w, int[] groups, int[] groupRanks, Topology topo, DType dt) {
    if (rows.length == 0) return null; // routed nowhere: zeros (firstDifference)
    int h = rows[0].length;
    float[] out = new float[h];
    for (int c = 0; c < h; c++) {
      float[] pair = new float[groups.length];
      int row = 0;
      for (int g = 0; g < groups.length; g++) {
        pair[g] = contractPair(rows, w, row, groups[g], c, dt);
        row += groups[g];
      }
      if (topo.nodes() == 1) {
        float sum = 0f;
        for (float p : pair) sum = sum + p;
        out[c] = round(sum, dt);
        continue;
      }
      float total = 0f;
      for (int m = 0; m < topo.nodes(); m++) {
        float node = 0f;
        boolean any = false;
        for (int g = 0; g < groups.length; g++) {
          if (topo.nodeOf(groupRanks[g]) == m) {
            node = node + pair[g];
            any = true;
          }
        }
        if (any) total = total + round(node, dt);
      }
      out[c] = round(total, dt);
    }
    return out;
  }

  /**
   * A pair partial, channel {@code c}: rows {@code first .. first + n - 1} weighted and summed in
   * float from 0, rounded. (Not the output of a token with that one pair: the home sum adds it to
   * a total that starts at +0, which turns a partial of -0 into +0.)
   */
  static float contractPair(float[][] rows, float[] w, int first, int n, int c, DType dt) {
    float acc = 0f;
    for (int i = first; i < first + n; i++) acc = acc + w[i] * rows[i][c];
    return round(acc, dt);
  }

  private static float round(float v, DType dt) {
    return switch (dt) {
      case BF16 -> Numerics.bf16ToFloat(Numerics.floatToBf16(v));
      case FP16 -> Numerics.fp16ToFloat(Numerics.floatToFp16(v));
      case FP32 -> v;
      case FP8_E4M3 -> throw new IllegalArgumentException("combine never rounds into fp8");
    };
  }

  /**
   * Null when {@code got} (one output row of {@code dt}) holds {@code want}'s values bit for bit,
   * two NaNs counting as equal; {@code want == null} means a token routed nowhere: zeros.
   */
  static String firstDifference(float[] want, byte[] got, DType dt) {
    int h = got.length / dt.bytes();
    RowBuffer have = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(got), 0, 1, h, dt, null);
    for (int c = 0; c < h; c++) {
      float a = want == null ? 0f : want[c];
      float b = have.getFloat(0, c);
      if (Float.floatToIntBits(a) != Float.floatToIntBits(b) && !(Float.isNaN(a) && Float.isNaN(b))) {
        return "channel " + c + ": want " + a + " got " + b;
      }
    }
    return null;
  }
}
