package io.moeyard.combine.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Every implementation of combine's arithmetic (the SIMD loops, the host helper's sums at each
 * rounding level this CPU has, and whichever {@link RowMath} picks) gives the scalar loops' bits
 * on random rows, odd widths and special values: NaN payloads, infinities, -0, denormals.
 */
class RowMathParityTest {
  private static float special(SplittableRandom rnd) {
    return switch (rnd.nextInt(12)) {
      case 0 -> Float.NaN;
      case 1 -> Float.POSITIVE_INFINITY;
      case 2 -> -0.0f;
      case 3 -> Float.MIN_VALUE;
      case 4 -> Float.MAX_VALUE;
      case 5 -> Float.intBitsToFloat(rnd.nextInt()); // any bits, NaN payloads included
      default -> (float) rnd.nextDouble(-8, 8);
    };
  }

  @Test
  void simdMatchesScalarBitForBit() {
    assertTrue(RowMath.SIMD, "tests run with --add-modules jdk.incubator.vector (see the parent pom)");
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    try (Arena arena = Arena.ofConfined()) {
      for (int trial = 0; trial < 300; trial++) {
        DType dt = rnd.nextBoolean() ? DType.BF16 : DType.FP32;
        int h = 1 + rnd.nextInt(100);
        RowBuffer y = RowBuffer.allocate(arena, 3, h, dt);
        for (int r = 0; r < 3; r++) {
          for (int c = 0; c < h; c++) {
            if (dt == DType.BF16) y.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, y.rowOffset(r) + 2L * c, (short) rnd.nextInt());
            else y.setFloat(r, c, special(rnd));
          }
        }
        float w = special(rnd);
        float[] a = new float[h];
        float[] b = new float[h];
        for (int c = 0; c < h; c++) a[c] = b[c] = special(rnd);
        String ctx = seed + " trial " + trial + " " + dt + " h=" + h;
        RowMath.addWeighted(a, y, 0, w);
        RowMath.scalarAddWeighted(b, y, 0, w);
        assertBits(a, b, ctx + " addWeighted");
        float[] s1 = new float[h];
        float[] s2 = new float[h];
        RowMath.setWeighted(s1, y, 2, w);
        java.util.Arrays.fill(s2, 0f);
        RowMath.scalarAddWeighted(s2, y, 2, w);
        assertBits(s1, s2, ctx + " setWeighted");
        RowMath.set(s1, y, 1);
        java.util.Arrays.fill(s2, 0f);
        RowMath.scalarAdd(s2, y, 1);
        assertBits(s1, s2, ctx + " set");
        RowMath.add(a, y, 1);
        RowMath.scalarAdd(b, y, 1);
        assertBits(a, b, ctx + " add");
        float[] p = new float[h];
        for (int c = 0; c < h; c++) p[c] = special(rnd);
        RowMath.addRounded(a, p, DType.BF16, h);
        RowMath.scalarAddRounded(b, p, DType.BF16, h);
        assertBits(a, b, ctx + " addRounded");
        RowBuffer o1 = RowBuffer.allocate(arena, 1, h, dt);
        RowBuffer o2 = RowBuffer.allocate(arena, 1, h, dt);
        RowMath.store(a, o1, 0);
        RowMath.scalarStore(a, o2, 0);
        assertEquals(-1, o1.segment().mismatch(o2.segment()), ctx + " store");
      }
    }
  }

  /** A sum's implementation under test: writes row 1 of {@code out}. */
  private interface Sum {
    void into(RowBuffer y, int[] rows, float[] w, int n, int[] groupEnd, int groups, RowBuffer out);
  }

  /** The one-pass sums of every implementation against the scalar steps, over 1..8 rows, weighted and not. */
  @Test
  void sumsMatchTheScalarSteps() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    java.util.Map<String, Sum> single = new java.util.LinkedHashMap<>();
    java.util.Map<String, Sum> grouped = new java.util.LinkedHashMap<>();
    single.put("RowMath", (y, rows, w, n, ge, g, o) -> RowMath.sumStore(new float[y.hidden()], new long[n], y, rows, w, n, o, 1));
    grouped.put("RowMath", (y, rows, w, n, ge, g, o) ->
        RowMath.sumGroupsStore(new float[y.hidden()], new float[y.hidden()], new long[n], y, rows, w, ge, g, o, 1));
    if (RowMath.SIMD) {
      single.put("vector", (y, rows, w, n, ge, g, o) -> VectorRowMath.sumRowsStoreBf16(
          y.segment(), offsets(y, rows, n), w, n, y.hidden(), o.segment(), o.rowOffset(1)));
      grouped.put("vector", (y, rows, w, n, ge, g, o) -> VectorRowMath.sumGroupsStoreBf16(
          y.segment(), offsets(y, rows, n), w, ge, g, y.hidden(), o.segment(), o.rowOffset(1)));
    }
    for (int level = 1; level <= NativeRowMath.LEVEL; level++) {
      int lv = level;
      boolean stream = rnd.nextBoolean();
      single.put("native level " + lv, (y, rows, w, n, ge, g, o) -> NativeRowMath.sumBf16(lv, y.segment(), offsets(y, rows, n), w,
          new int[] {n}, null, 1, y.hidden(), o.segment(), o.rowOffset(1), o.rowBytes(), stream));
      grouped.put("native level " + lv, (y, rows, w, n, ge, g, o) -> NativeRowMath.sumBf16(lv, y.segment(), offsets(y, rows, n), w,
          ge, new int[] {g}, 1, y.hidden(), o.segment(), o.rowOffset(1), o.rowBytes(), false));
    }
    try (Arena arena = Arena.ofConfined()) {
      for (int trial = 0; trial < 400; trial++) {
        DType dt = rnd.nextInt(4) == 0 ? DType.FP32 : DType.BF16;
        int h = rnd.nextBoolean() ? 1 + rnd.nextInt(100) : 16 * (1 + rnd.nextInt(8));
        int rowsIn = 1 + rnd.nextInt(10);
        // one trial in four: tiny values only, so that sums land on denormals (which AVX512_BF16's
        // conversion would flush to zero) and on -0 after rounding
        boolean tiny = rnd.nextInt(4) == 0;
        RowBuffer y = RowBuffer.allocate(arena, rowsIn, h, dt);
        for (int r = 0; r < rowsIn; r++) {
          for (int c = 0; c < h; c++) {
            if (dt == DType.BF16) {
              int bits = tiny ? (rnd.nextInt() & 0x80FF) | (rnd.nextInt(3) << 7) : rnd.nextInt();
              y.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, y.rowOffset(r) + 2L * c, (short) bits);
            } else {
              y.setFloat(r, c, special(rnd));
            }
          }
        }
        int n = 1 + rnd.nextInt(8);
        int[] rows = new int[n];
        for (int i = 0; i < n; i++) rows[i] = rnd.nextInt(rowsIn);
        float[] w = null;
        if (rnd.nextBoolean()) {
          w = new float[n];
          for (int i = 0; i < n; i++) w[i] = tiny ? (float) rnd.nextDouble(-1, 1) : special(rnd);
        }
        String ctx = seed + " trial " + trial + " " + dt + " h=" + h + " n=" + n + (w == null ? " unweighted" : "")
            + (tiny ? " tiny" : "");
        RowBuffer expected = RowBuffer.allocate(arena, 2, h, dt);
        float[] acc = new float[h];
        for (int i = 0; i < n; i++) {
          if (w == null) RowMath.scalarAdd(acc, y, rows[i]);
          else RowMath.scalarAddWeighted(acc, y, rows[i], w[i]);
        }
        RowMath.scalarStore(acc, expected, 1);
        for (var impl : single.entrySet()) {
          if (dt != DType.BF16 && !impl.getKey().equals("RowMath")) continue;
          RowBuffer got = RowBuffer.allocate(arena, 2, h, dt);
          impl.getValue().into(y, rows, w, n, null, 1, got);
          assertSameRow(got, expected, 1, dt, ctx + " single-level, " + impl.getKey());
          for (int c = 0; c < h; c++) assertEquals(0f, got.getFloat(0, c), ctx + " " + impl.getKey() + " wrote outside its row");
        }
        // the unfused path's two-level form: the same rows in random groups, weighted
        float[] gw = new float[n];
        for (int i = 0; i < n; i++) gw[i] = w != null ? w[i] : tiny ? (float) rnd.nextDouble(-1, 1) : special(rnd);
        // a random composition of n into non-empty groups: cut after each row with probability 1/2
        int[] cuts = new int[n];
        int groups = 0;
        for (int r = 1; r < n; r++) if (rnd.nextBoolean()) cuts[groups++] = r;
        cuts[groups++] = n;
        int[] groupEnd = java.util.Arrays.copyOf(cuts, groups);
        float[] total = new float[h];
        int i = 0;
        for (int g = 0; g < groups; g++) {
          float[] part = new float[h];
          for (; i < groupEnd[g]; i++) RowMath.scalarAddWeighted(part, y, rows[i], gw[i]);
          RowMath.scalarAddRounded(total, part, dt, h);
        }
        RowMath.scalarStore(total, expected, 1);
        for (var impl : grouped.entrySet()) {
          if (dt != DType.BF16 && !impl.getKey().equals("RowMath")) continue;
          RowBuffer got = RowBuffer.allocate(arena, 2, h, dt);
          impl.getValue().into(y, rows, gw, n, groupEnd, groups, got);
          assertSameRow(got, expected, 1, dt, ctx + " groups=" + java.util.Arrays.toString(groupEnd) + ", " + impl.getKey());
          for (int c = 0; c < h; c++) assertEquals(0f, got.getFloat(0, c), ctx + " " + impl.getKey() + " wrote outside its row");
        }
      }
    }
  }

  /**
   * A batch of sums (what the combiners run: a chunk of pairs, every token at home) equals the
   * same sums one at a time, outputs without terms are zeros, and nothing outside the batch's
   * rows is written; single- and two-level, streamed or not. Runs on the host helper where it
   * loaded, and on the Java path in the java-sums test run.
   */
  @Test
  void batchesEqualOneSumAtATime() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    try (Arena arena = Arena.ofShared()) {
      for (int trial = 0; trial < 150; trial++) {
        DType dt = rnd.nextInt(4) == 0 ? DType.FP32 : DType.BF16;
        int h = rnd.nextBoolean() ? 1 + rnd.nextInt(100) : 32 * (1 + rnd.nextInt(4));
        int rowsIn = 1 + rnd.nextInt(12);
        RowBuffer y = RowBuffer.allocate(arena, rowsIn, h, dt);
        for (int r = 0; r < rowsIn; r++) for (int c = 0; c < h; c++) y.setFloat(r, c, (float) rnd.nextDouble(-4, 4));
        boolean twoLevel = rnd.nextBoolean();
        boolean weighted = twoLevel || rnd.nextBoolean();
        boolean stream = rnd.nextBoolean();
        int outputs = rnd.nextInt(20);
        int first = rnd.nextInt(3);
        SumBatch batch = new SumBatch(twoLevel, arena);
        RowBuffer got = RowBuffer.allocate(arena, first + outputs + 2, h, dt);
        RowBuffer want = RowBuffer.allocate(arena, first + outputs + 2, h, dt);
        for (int rep = 0; rep < 2; rep++) { // a reused batch forgets what it listed before
          batch.clear();
          want.segment().fill((byte) 0x3C); // rows outside the batch must keep this
          for (int j = 0; j < outputs; j++) {
            int groups = rnd.nextInt(4) == 0 ? 0 : 1 + (twoLevel ? rnd.nextInt(4) : 0);
            int[] rows = new int[0];
            float[] w = new float[0];
            int[] ends = new int[groups];
            for (int g = 0; g < groups; g++) {
              int n = 1 + rnd.nextInt(4);
              for (int i = 0; i < n; i++) {
                rows = java.util.Arrays.copyOf(rows, rows.length + 1);
                w = java.util.Arrays.copyOf(w, w.length + 1);
                rows[rows.length - 1] = rnd.nextInt(rowsIn);
                w[w.length - 1] = (float) rnd.nextDouble(-1, 1);
                batch.term(rows[rows.length - 1], w[w.length - 1]);
              }
              ends[g] = rows.length;
              if (twoLevel) batch.endGroup();
            }
            batch.endOutput();
            if (rows.length == 0) RowMath.zero(want, first + j);
            else if (twoLevel) RowMath.sumGroupsStore(new float[h], new float[h], new long[rows.length], y, rows, w, ends, groups, want, first + j);
            else RowMath.sumStore(new float[h], new long[rows.length], y, rows, weighted ? w : null, rows.length, want, first + j);
          }
          got.segment().fill((byte) 0x3C);
          batch.run(y, weighted, got, first, stream);
          String ctx = seed + " trial " + trial + " rep " + rep + " " + dt + " h=" + h + " outputs=" + outputs
              + (twoLevel ? " two-level" : "") + (weighted ? " weighted" : "") + (stream ? " streamed" : "");
          assertEquals(batch.outputs(), outputs, ctx);
          for (int r = 0; r < got.rows(); r++) assertSameRow(got, want, r, dt, ctx + " row " + r);
        }
      }
    }
  }

  @Test
  void theHostHelperSumsWhereItLoadedAndAvx2Exists() {
    // whether the helper is built where a compiler exists is RowCopyTest's check; here: where it
    // loaded, its best kernel follows the CPU
    boolean loaded = io.moeyard.engine.HostLibrary.loaded();
    String flags = cpuFlags();
    if (Boolean.getBoolean("moeyard.rowsum.disable")) {
      assertEquals(0, NativeRowMath.LEVEL, "-Dmoeyard.rowsum.disable=true must turn the native sums off");
      return;
    }
    org.junit.jupiter.api.Assumptions.assumeTrue(loaded && flags.contains(" avx2 "), "no host helper or no AVX2: Java sums are used");
    boolean avx512 = flags.contains(" avx512f ") && flags.contains(" avx512bw ");
    int expected = avx512 && flags.contains(" avx512_bf16 ") ? 3 : avx512 ? 2 : 1;
    assertEquals(expected, NativeRowMath.LEVEL, "kernel level of the host helper's sums for CPU flags" + flags);
    assertTrue(NativeRowMath.AVAILABLE);
  }

  private static String cpuFlags() {
    try {
      for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
        if (line.startsWith("flags")) return line.substring(line.indexOf(':') + 1) + " ";
      }
    } catch (java.io.IOException e) {
      // not Linux: no flags, the assumption below skips
    }
    return "";
  }

  private static long[] offsets(RowBuffer y, int[] rows, int n) {
    long[] off = new long[n];
    for (int i = 0; i < n; i++) off[i] = y.rowOffset(rows[i]);
    return off;
  }

  /** Row {@code row} equal bit for bit in both, except that a NaN may carry another payload (as in {@link #assertBits}). */
  private static void assertSameRow(RowBuffer a, RowBuffer b, int row, DType dt, String ctx) {
    for (int c = 0; c < a.hidden(); c++) {
      float x = a.getFloat(row, c);
      float y = b.getFloat(row, c);
      boolean same = dt == DType.BF16
          ? a.segment().get(ValueLayout.JAVA_SHORT_UNALIGNED, a.rowOffset(row) + 2L * c)
              == b.segment().get(ValueLayout.JAVA_SHORT_UNALIGNED, b.rowOffset(row) + 2L * c)
          : Float.floatToRawIntBits(x) == Float.floatToRawIntBits(y);
      if (!same && !(Float.isNaN(x) && Float.isNaN(y))) throw new AssertionError(ctx + " channel " + c + ": " + x + " vs " + y);
    }
  }

  private static void assertBits(float[] a, float[] b, String ctx) {
    for (int c = 0; c < a.length; c++) {
      if (Float.floatToRawIntBits(a[c]) != Float.floatToRawIntBits(b[c]) && !(Float.isNaN(a[c]) && Float.isNaN(b[c]))) {
        throw new AssertionError(ctx + " channel " + c + ": " + a[c] + " vs " + b[c]);
      }
    }
  }
}
