package io.moeyard.combine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The SIMD loops give the scalar loops' bits on random rows, odd widths and special values. */
class VectorRowMathParityTest {
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
    long seed = System.nanoTime();
    SplittableRandom rnd = new SplittableRandom(seed);
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
        String ctx = "seed " + seed + " trial " + trial + " " + dt + " h=" + h;
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

  /** The one-pass whole sums against the scalar steps, over 1..8 rows, weighted and not. */
  @Test
  void sumStoreMatchesScalarSteps() {
    long seed = System.nanoTime();
    SplittableRandom rnd = new SplittableRandom(seed);
    try (Arena arena = Arena.ofConfined()) {
      for (int trial = 0; trial < 300; trial++) {
        DType dt = rnd.nextInt(4) == 0 ? DType.FP32 : DType.BF16;
        int h = rnd.nextBoolean() ? 1 + rnd.nextInt(100) : 16 * (1 + rnd.nextInt(8));
        int rowsIn = 1 + rnd.nextInt(10);
        RowBuffer y = RowBuffer.allocate(arena, rowsIn, h, dt);
        for (int r = 0; r < rowsIn; r++) {
          for (int c = 0; c < h; c++) {
            if (dt == DType.BF16) y.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, y.rowOffset(r) + 2L * c, (short) rnd.nextInt());
            else y.setFloat(r, c, special(rnd));
          }
        }
        int n = 1 + rnd.nextInt(8);
        int[] rows = new int[n];
        for (int i = 0; i < n; i++) rows[i] = rnd.nextInt(rowsIn);
        float[] w = null;
        if (rnd.nextBoolean()) {
          w = new float[n];
          for (int i = 0; i < n; i++) w[i] = special(rnd);
        }
        RowBuffer o1 = RowBuffer.allocate(arena, 2, h, dt);
        RowBuffer o2 = RowBuffer.allocate(arena, 2, h, dt);
        RowMath.sumStore(new float[h], new long[n], y, rows, w, n, o1, 1);
        float[] acc = new float[h];
        for (int i = 0; i < n; i++) {
          if (w == null) RowMath.scalarAdd(acc, y, rows[i]);
          else RowMath.scalarAddWeighted(acc, y, rows[i], w[i]);
        }
        RowMath.scalarStore(acc, o2, 1);
        String ctx = "seed " + seed + " trial " + trial + " " + dt + " h=" + h + " n=" + n + (w == null ? " unweighted" : "");
        assertSameRow(o1, o2, 1, dt, ctx);
        // the unfused path's two-level form: the same rows in random groups, weighted
        float[] gw = new float[n];
        for (int i = 0; i < n; i++) gw[i] = w != null ? w[i] : special(rnd);
        // a random composition of n into non-empty groups: cut after each row with probability 1/2
        int[] cuts = new int[n];
        int groups = 0;
        for (int r = 1; r < n; r++) if (rnd.nextBoolean()) cuts[groups++] = r;
        cuts[groups++] = n;
        int[] groupEnd = java.util.Arrays.copyOf(cuts, groups);
        RowMath.sumGroupsStore(new float[h], new float[h], new long[n], y, rows, gw, groupEnd, groups, o1, 1);
        float[] total = new float[h];
        int i = 0;
        for (int g = 0; g < groups; g++) {
          float[] part = new float[h];
          for (; i < groupEnd[g]; i++) RowMath.scalarAddWeighted(part, y, rows[i], gw[i]);
          RowMath.scalarAddRounded(total, part, dt, h);
        }
        RowMath.scalarStore(total, o2, 1);
        assertSameRow(o1, o2, 1, dt, ctx + " sumGroupsStore groups=" + java.util.Arrays.toString(groupEnd));
        // row 0 of the output is untouched: the sum stays inside its row
        for (int c = 0; c < h; c++) assertEquals(0f, o1.getFloat(0, c), ctx + " wrote outside its row");
      }
    }
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
