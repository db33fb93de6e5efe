package io.moeyard.combine.internal;

import io.moeyard.engine.DType;
import io.moeyard.engine.Numerics;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The arithmetic of combine, one definition for every path: float accumulators, products and
 * sums rounded separately (Java never fuses {@code a + w * y} into an FMA; the CUDA kernels use
 * {@code __fmul_rn}/{@code __fadd_rn} to match), one rounding to the storage type per stored
 * value. Loops are specialised per dtype so the JIT sees straight-line code.
 */
final class RowMath {
  private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED;
  private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED;

  /**
   * Whether the SIMD loops of {@link VectorRowMath} are used: when the JVM was started with
   * {@code --add-modules jdk.incubator.vector} (the launcher and the test runs do) and not
   * {@code -Dmoeyard.vector.disable=true}. Same results either way; the SIMD loops are several times faster.
   */
  static final boolean SIMD = ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()
      && !Boolean.getBoolean("moeyard.vector.disable");

  private RowMath() {}

  /** {@code acc[c] = acc[c] + w * y[row][c]} for every channel. */
  static void addWeighted(float[] acc, RowBuffer y, int row, float w) {
    MemorySegment s = y.segment();
    long at = y.rowOffset(row);
    int h = y.hidden();
    if (SIMD && y.dtype() == DType.BF16) {
      VectorRowMath.addWeightedBf16(acc, s, at, h, w);
      return;
    }
    if (SIMD && y.dtype() == DType.FP32) {
      VectorRowMath.addWeightedFp32(acc, s, at, h, w);
      return;
    }
    scalarAddWeighted(acc, y, row, w);
  }

  /**
   * {@code acc[c] = 0 + w * y[row][c]}: starts a sum at its first row, saving the pass that
   * clears acc; the same bits as clearing and then {@link #addWeighted} (IEEE: 0 + -0 = +0).
   */
  static void setWeighted(float[] acc, RowBuffer y, int row, float w) {
    if (SIMD && y.dtype() == DType.BF16) {
      VectorRowMath.setWeightedBf16(acc, y.segment(), y.rowOffset(row), y.hidden(), w);
      return;
    }
    java.util.Arrays.fill(acc, 0, y.hidden(), 0f);
    addWeighted(acc, y, row, w);
  }

  /** {@code acc[c] = 0 + y[row][c]}, likewise. */
  static void set(float[] acc, RowBuffer y, int row) {
    if (SIMD && y.dtype() == DType.BF16) {
      VectorRowMath.setBf16(acc, y.segment(), y.rowOffset(row), y.hidden());
      return;
    }
    java.util.Arrays.fill(acc, 0, y.hidden(), 0f);
    add(acc, y, row);
  }

  static void scalarAddWeighted(float[] acc, RowBuffer y, int row, float w) {
    MemorySegment s = y.segment();
    long at = y.rowOffset(row);
    int h = y.hidden();
    switch (y.dtype()) {
      case BF16 -> {
        for (int c = 0; c < h; c++) {
          float p = w * Float.intBitsToFloat((s.get(SHORT, at + 2L * c) & 0xFFFF) << 16);
          acc[c] = acc[c] + p;
        }
      }
      case FP16 -> {
        for (int c = 0; c < h; c++) {
          float p = w * Float.float16ToFloat(s.get(SHORT, at + 2L * c));
          acc[c] = acc[c] + p;
        }
      }
      case FP32 -> {
        for (int c = 0; c < h; c++) {
          float p = w * s.get(FLOAT, at + 4L * c);
          acc[c] = acc[c] + p;
        }
      }
      default -> throw new IllegalArgumentException("combine cannot read " + y.dtype().cliName());
    }
  }

  /** {@code acc[c] = acc[c] + y[row][c]}. */
  static void add(float[] acc, RowBuffer y, int row) {
    if (SIMD && y.dtype() == DType.BF16) {
      VectorRowMath.addBf16(acc, y.segment(), y.rowOffset(row), y.hidden());
      return;
    }
    if (SIMD && y.dtype() == DType.FP32) {
      VectorRowMath.addFp32(acc, y.segment(), y.rowOffset(row), y.hidden());
      return;
    }
    scalarAdd(acc, y, row);
  }

  static void scalarAdd(float[] acc, RowBuffer y, int row) {
    MemorySegment s = y.segment();
    long at = y.rowOffset(row);
    int h = y.hidden();
    switch (y.dtype()) {
      case BF16 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + Float.intBitsToFloat((s.get(SHORT, at + 2L * c) & 0xFFFF) << 16);
      }
      case FP16 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + Float.float16ToFloat(s.get(SHORT, at + 2L * c));
      }
      case FP32 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + s.get(FLOAT, at + 4L * c);
      }
      default -> throw new IllegalArgumentException("combine cannot read " + y.dtype().cliName());
    }
  }

  /** {@code dst[row][c] = round(acc[c])} to dst's type, nearest even. */
  static void store(float[] acc, RowBuffer dst, int row) {
    if (SIMD && dst.dtype() == DType.BF16) {
      VectorRowMath.storeBf16(acc, dst.segment(), dst.rowOffset(row), dst.hidden());
      return;
    }
    scalarStore(acc, dst, row);
  }

  static void scalarStore(float[] acc, RowBuffer dst, int row) {
    MemorySegment s = dst.segment();
    long at = dst.rowOffset(row);
    int h = dst.hidden();
    switch (dst.dtype()) {
      case BF16 -> {
        for (int c = 0; c < h; c++) s.set(SHORT, at + 2L * c, Numerics.floatToBf16(acc[c]));
      }
      case FP16 -> {
        for (int c = 0; c < h; c++) s.set(SHORT, at + 2L * c, Float.floatToFloat16(acc[c]));
      }
      case FP32 -> {
        for (int c = 0; c < h; c++) s.set(FLOAT, at + 4L * c, acc[c]);
      }
      default -> throw new IllegalArgumentException("combine cannot write " + dst.dtype().cliName());
    }
  }

  /** {@code acc[c] = acc[c] + float(round(partial[c]))}: adds a partial as if it had been stored in {@code dtype}. */
  static void addRounded(float[] acc, float[] partial, DType dtype, int h) {
    if (SIMD && dtype == DType.BF16) {
      VectorRowMath.addRoundedBf16(acc, partial, h);
      return;
    }
    scalarAddRounded(acc, partial, dtype, h);
  }

  static void scalarAddRounded(float[] acc, float[] partial, DType dtype, int h) {
    switch (dtype) {
      case BF16 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + Numerics.bf16ToFloat(Numerics.floatToBf16(partial[c]));
      }
      case FP16 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + Float.float16ToFloat(Float.floatToFloat16(partial[c]));
      }
      case FP32 -> {
        for (int c = 0; c < h; c++) acc[c] = acc[c] + partial[c];
      }
      default -> throw new IllegalArgumentException("combine cannot round to " + dtype.cliName());
    }
  }

  /**
   * A whole weighted sum, stored: {@code dst[dstRow] = round(((0 + w[0] * y[rows[0]]) + w[1] *
   * y[rows[1]]) + ...)} over {@code n >= 1} rows ({@code w == null}: unweighted), the same bits as
   * {@link #setWeighted}, {@link #addWeighted}..., {@link #store}; in one pass over the rows where
   * the SIMD loops apply. {@code off} is scratch of at least n entries; acc is scratch too.
   */
  static void sumStore(float[] acc, long[] off, RowBuffer y, int[] rows, float[] w, int n, RowBuffer dst, int dstRow) {
    if (SIMD && y.dtype() == DType.BF16 && dst.dtype() == DType.BF16) {
      for (int i = 0; i < n; i++) off[i] = y.rowOffset(rows[i]);
      VectorRowMath.sumRowsStoreBf16(y.segment(), off, w, n, y.hidden(), dst.segment(), dst.rowOffset(dstRow));
      return;
    }
    for (int i = 0; i < n; i++) {
      if (w == null) {
        if (i == 0) set(acc, y, rows[i]);
        else add(acc, y, rows[i]);
      } else {
        if (i == 0) setWeighted(acc, y, rows[i], w[i]);
        else addWeighted(acc, y, rows[i], w[i]);
      }
    }
    store(acc, dst, dstRow);
  }

  /**
   * The unfused path's reduction of one token, stored: rows grouped by expert rank ({@code
   * groupEnd[g]} ends group g in {@code rows} and {@code w}); per group the weighted sum in
   * float, rounded to dst's type as the fused path rounds its partial; the groups summed in order
   * in float, rounded once. The same bits as the fused path's two levels; in one pass where the
   * SIMD loops apply. {@code off} is scratch of at least {@code groupEnd[groups - 1]} entries;
   * {@code acc} and {@code partial} are scratch too.
   */
  static void sumGroupsStore(float[] acc, float[] partial, long[] off, RowBuffer y, int[] rows, float[] w, int[] groupEnd,
      int groups, RowBuffer dst, int dstRow) {
    if (SIMD && y.dtype() == DType.BF16 && dst.dtype() == DType.BF16) {
      for (int i = 0; i < groupEnd[groups - 1]; i++) off[i] = y.rowOffset(rows[i]);
      VectorRowMath.sumGroupsStoreBf16(y.segment(), off, w, groupEnd, groups, y.hidden(), dst.segment(), dst.rowOffset(dstRow));
      return;
    }
    int h = dst.hidden();
    java.util.Arrays.fill(acc, 0, h, 0f);
    int i = 0;
    for (int g = 0; g < groups; g++) {
      java.util.Arrays.fill(partial, 0, h, 0f);
      for (; i < groupEnd[g]; i++) addWeighted(partial, y, rows[i], w[i]);
      addRounded(acc, partial, dst.dtype(), h);
    }
    store(acc, dst, dstRow);
  }

  static void zero(RowBuffer dst, int row) {
    dst.segment().asSlice(dst.rowOffset(row), dst.rowBytes()).fill((byte) 0);
  }
}
