package io.moeyard.combine.internal;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The sums of one combine step (a chunk of an expert rank's pairs, every token at home), listed
 * first and then computed in one go: by the host helper in a single call where it serves ({@link
 * NativeRowMath}: BF16, off-heap rows, AVX2 or AVX-512), else output by output with {@link RowMath}'s
 * Java loops. Both give the same bits. Outputs land in consecutive rows of the destination.
 *
 * <p>Listing: {@link #term} adds a row (and its weight) to the current group; a single-level
 * batch closes each output with {@link #endOutput} (one group per output, rounded once); a
 * two-level batch closes groups with {@link #endGroup} and outputs with {@link #endOutput}
 * (each group's sum rounded to the output type, then the groups summed). An output without terms
 * is zeros. The arrays only grow: no allocation once warm.
 */
final class SumBatch {
  /** Rows computed before each streamed copy in the Java path: 8 rows of 4 KiB stay in L1/L2. */
  private static final int STAGE_ROWS = 8;

  private final boolean twoLevel;
  private final Arena scratch;
  private int[] rows = new int[256];
  private float[] weights = new float[256];
  /** The terms' byte offsets, filled for the host helper only. */
  private long[] offsets = new long[0];
  private int[] groupEnd = new int[64];
  private int[] outEnd = new int[64];
  private int terms;
  private int groups;
  private int outputs;
  /** Views of the four arrays above for the host helper, remade only when an array grows (is another array). */
  private NativeRowMath.Views views;
  private Object[] viewed = new Object[4];

  // the Java path's scratch: one output's terms, and the stage for streamed outputs
  private float[] acc = new float[0];
  private float[] partial = new float[0];
  private int[] termRows = new int[8];
  private float[] termWeights = new float[8];
  private long[] termOffsets = new long[8];
  private int[] termGroupEnd = new int[8];
  private RowBuffer stage;

  /** A batch of single-level ({@code twoLevel == false}) or two-level sums; the stage comes from {@code scratch}. */
  SumBatch(boolean twoLevel, Arena scratch) {
    this.twoLevel = twoLevel;
    this.scratch = scratch;
  }

  /** Forgets the listed sums. */
  void clear() {
    terms = 0;
    groups = 0;
    outputs = 0;
  }

  /** Adds {@code row} with weight {@code w} to the current group (w is ignored by unweighted runs). */
  void term(int row, float w) {
    if (terms == rows.length) {
      rows = Arrays.copyOf(rows, 2 * terms);
      weights = Arrays.copyOf(weights, 2 * terms);
    }
    rows[terms] = row;
    weights[terms++] = w;
  }

  /** Closes the current group of a two-level batch. */
  void endGroup() {
    if (!twoLevel) throw new IllegalStateException("a single-level batch has one group per output: call endOutput");
    closeGroup();
  }

  /** Closes the current output (and, single-level, its group). */
  void endOutput() {
    if (!twoLevel) {
      closeGroup();
      outputs++;
      return;
    }
    if (outputs == outEnd.length) outEnd = Arrays.copyOf(outEnd, 2 * outputs);
    outEnd[outputs++] = groups;
  }

  private void closeGroup() {
    if (groups == groupEnd.length) groupEnd = Arrays.copyOf(groupEnd, 2 * groups);
    groupEnd[groups++] = terms;
  }

  int outputs() {
    return outputs;
  }

  /**
   * Computes the listed sums of {@code y}'s rows into rows {@code firstRow, firstRow + 1, ...} of
   * {@code dst}. {@code stream}: the outputs are not read again soon (partials for another rank),
   * so they are written with streaming stores (natively from registers, in Java through a small
   * stage and {@link RowCopy}); every store is complete when this returns.
   */
  void run(RowBuffer y, boolean weighted, RowBuffer dst, int firstRow, boolean stream) {
    if (outputs == 0) return;
    if (twoLevel && !weighted) throw new IllegalArgumentException("two-level sums are weighted");
    if (firstRow < 0 || firstRow + outputs > dst.rows()) {
      throw new IndexOutOfBoundsException(outputs + " outputs from row " + firstRow + " of " + dst.rows());
    }
    if (NativeRowMath.AVAILABLE && y.dtype() == DType.BF16 && dst.dtype() == DType.BF16
        && y.segment().isNative() && dst.segment().isNative()) {
      if (offsets.length < terms) offsets = new long[rows.length];
      for (int i = 0; i < terms; i++) offsets[i] = y.rowOffset(rows[i]); // NativeRowMath bounds-checks them
      if (viewed[0] != offsets || viewed[1] != weights || viewed[2] != groupEnd || viewed[3] != outEnd) {
        views = new NativeRowMath.Views(MemorySegment.ofArray(offsets), MemorySegment.ofArray(weights),
            MemorySegment.ofArray(groupEnd), MemorySegment.ofArray(outEnd));
        viewed = new Object[] {offsets, weights, groupEnd, outEnd};
      }
      NativeRowMath.sumBf16(NativeRowMath.LEVEL, y.segment(), offsets, weighted ? weights : null, groupEnd,
          twoLevel ? outEnd : null, outputs, y.hidden(), dst.segment(), dst.rowOffset(firstRow), dst.rowBytes(), stream, views);
      return;
    }
    runJava(y, weighted, dst, firstRow, stream);
  }

  private void runJava(RowBuffer y, boolean weighted, RowBuffer dst, int firstRow, boolean stream) {
    int h = dst.hidden();
    if (acc.length < h) {
      acc = new float[h];
      partial = new float[h];
    }
    RowBuffer target = stream ? staging(h, dst.dtype()) : dst;
    int staged = 0;
    int g0 = 0;
    for (int j = 0; j < outputs; j++) {
      int g1 = twoLevel ? outEnd[j] : j + 1;
      int t0 = g0 == 0 ? 0 : groupEnd[g0 - 1];
      int n = (g1 == g0 ? t0 : groupEnd[g1 - 1]) - t0;
      int row = stream ? staged++ : firstRow + j;
      if (n == 0) {
        RowMath.zero(target, row);
      } else {
        if (termRows.length < n) {
          termRows = new int[n];
          termWeights = new float[n];
          termOffsets = new long[n];
        }
        System.arraycopy(rows, t0, termRows, 0, n);
        System.arraycopy(weights, t0, termWeights, 0, n);
        if (twoLevel) {
          int gs = g1 - g0;
          if (termGroupEnd.length < gs) termGroupEnd = new int[gs];
          for (int g = 0; g < gs; g++) termGroupEnd[g] = groupEnd[g0 + g] - t0;
          RowMath.sumGroupsStore(acc, partial, termOffsets, y, termRows, termWeights, termGroupEnd, gs, target, row);
        } else {
          RowMath.sumStore(acc, termOffsets, y, termRows, weighted ? termWeights : null, n, target, row);
        }
      }
      if (stream && (staged == STAGE_ROWS || j == outputs - 1)) {
        RowCopy.copy(stage.segment(), stage.rowOffset(0), dst.segment(), dst.rowOffset(firstRow + j + 1 - staged),
            staged * stage.rowBytes());
        staged = 0;
      }
      g0 = g1;
    }
  }

  private RowBuffer staging(int hidden, DType dtype) {
    if (stage == null || stage.hidden() != hidden || stage.dtype() != dtype) {
      stage = RowBuffer.allocate(scratch, STAGE_ROWS, hidden, dtype);
    }
    return stage;
  }
}
