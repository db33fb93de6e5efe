package io.moeyard.combine.internal;

import io.moeyard.engine.HostLibrary;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Combine's BF16 sums in the host helper ({@code rowsum.c} of {@link HostLibrary}): the same
 * operations and bits as {@link RowMath#sumStore} and {@link RowMath#sumGroupsStore}, a batch of
 * sums per call. On the 2-core AVX-512 VM a fused expert side's chunk of sums runs about 3x
 * faster than in the Vector API: the rounding to BF16 is one instruction where the CPU has
 * AVX512_BF16, partials stream from registers straight to their home rank, and one call serves a
 * whole chunk. Used where the helper loaded and the CPU has AVX2 or AVX-512, unless {@code
 * -Dmoeyard.rowsum.disable=true}; {@link SumBatch} picks.
 */
final class NativeRowMath {
  private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
  private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;
  private static final ValueLayout ADDRESS = ValueLayout.ADDRESS;

  /**
   * The best kernel this CPU runs: 3 = AVX-512 with AVX512_BF16's rounding, 2 = AVX-512 with
   * integer rounding, 1 = AVX2 with integer rounding, 0 = no native sums (no helper, no AVX2, or
   * {@code -Dmoeyard.rowsum.disable=true}). {@code -Dmoeyard.rowsum.level=N} caps it at N (to
   * compare kernels on one machine). Every level gives the same bits.
   */
  static final int LEVEL = level();

  private static final MethodHandle SUM = LEVEL == 0 ? null : HostLibrary.downcall("moeyard_sum_bf16",
      FunctionDescriptor.ofVoid(INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, INT, INT, ADDRESS, LONG, LONG, INT),
      Linker.Option.critical(true)) // heap index arrays passed without copies; no callbacks
      .orElse(null);

  /** True when {@link #sumBf16} may be called. */
  static final boolean AVAILABLE = SUM != null;

  private NativeRowMath() {}

  private static int level() {
    if (Boolean.getBoolean("moeyard.rowsum.disable")) return 0;
    MethodHandle level = HostLibrary.downcall("moeyard_rowsum_level", FunctionDescriptor.of(INT)).orElse(null);
    if (level == null) return 0;
    try {
      int best = (int) level.invokeExact();
      return Math.max(0, Math.min(best, Integer.getInteger("moeyard.rowsum.level", best)));
    } catch (Throwable e) {
      return 0;
    }
  }

  /**
   * {@code outputs} BF16 sums of {@code h} channels: output j goes to byte offset {@code dstAt + j
   * * stride} of {@code dst}. Its terms are BF16 rows at byte offsets {@code off} of {@code src},
   * with weights {@code w} (null: unweighted). Terms form groups, {@code groupEnd[g]} being the end
   * of group g in {@code off}; with {@code outEnd} (the end of output j's groups in {@code
   * groupEnd}) output j is {@link RowMath#sumGroupsStore}'s two-level sum of its groups, without
   * it output j is {@link RowMath#sumStore}'s single-level sum of group j. An output without terms
   * is zeros. {@code stream}: streaming stores, fenced before the call returns.
   *
   * @param level the kernel, 1 to {@link #LEVEL} (tests run every level this CPU has)
   * @throws IndexOutOfBoundsException if an index or row lies outside its array or segment
   *     (checked before anything is written)
   */
  static void sumBf16(int level, MemorySegment src, long[] off, float[] w, int[] groupEnd, int[] outEnd, int outputs, int h,
      MemorySegment dst, long dstAt, long stride, boolean stream) {
    sumBf16(level, src, off, w, groupEnd, outEnd, outputs, h, dst, dstAt, stride, stream, null);
  }

  /**
   * The caller's views of its arrays for {@link #sumBf16}: {@code MemorySegment.ofArray} of
   * exactly the arrays passed (null where an array is null), kept while the arrays are, so that a
   * steady state of sums allocates nothing.
   */
  record Views(MemorySegment off, MemorySegment w, MemorySegment groupEnd, MemorySegment outEnd) {}

  /** As {@link #sumBf16(int, MemorySegment, long[], float[], int[], int[], int, int, MemorySegment, long, long, boolean)}, with the views of its arrays (null: made here). */
  static void sumBf16(int level, MemorySegment src, long[] off, float[] w, int[] groupEnd, int[] outEnd, int outputs, int h,
      MemorySegment dst, long dstAt, long stride, boolean stream, Views views) {
    if (level < 1 || level > LEVEL) throw new IllegalArgumentException("kernel level " + level + ", this CPU runs 1 to " + LEVEL);
    if (!src.isNative() || !dst.isNative()) throw new IllegalArgumentException("native sums need off-heap rows");
    if (outputs < 0 || h < 1) throw new IllegalArgumentException(outputs + " outputs of hidden " + h);
    if (outputs == 0) return;
    int groups = outEnd == null ? outputs : ends(outEnd, outputs, groupEnd.length, "group");
    int terms = ends(groupEnd, groups, off.length, "term");
    if (w != null && w.length < terms) throw new IndexOutOfBoundsException(terms + " terms, " + w.length + " weights");
    long rowBytes = 2L * h;
    long srcLimit = src.byteSize() - rowBytes;
    for (int i = 0; i < terms; i++) {
      if (off[i] < 0 || off[i] > srcLimit) throw new IndexOutOfBoundsException("term " + i + " at byte " + off[i] + " outside " + src);
    }
    long last = dstAt + (outputs - 1) * stride;
    if (dstAt < 0 || stride < rowBytes || last > dst.byteSize() - rowBytes) {
      throw new IndexOutOfBoundsException(outputs + " rows of " + rowBytes + " bytes from byte " + dstAt + ", stride " + stride + ", outside " + dst);
    }
    // locals, not conditionals: as arguments of invokeExact those would be typed Object
    MemorySegment weights = w == null ? MemorySegment.NULL : views != null ? views.w() : MemorySegment.ofArray(w);
    MemorySegment outs = outEnd == null ? MemorySegment.NULL : views != null ? views.outEnd() : MemorySegment.ofArray(outEnd);
    MemorySegment offs = views != null ? views.off() : MemorySegment.ofArray(off);
    MemorySegment groupEnds = views != null ? views.groupEnd() : MemorySegment.ofArray(groupEnd);
    if (views != null && (offs.byteSize() != 8L * off.length || groupEnds.byteSize() != 4L * groupEnd.length
        || w != null && weights.byteSize() != 4L * w.length || outEnd != null && outs.byteSize() != 4L * outEnd.length)) {
      throw new IllegalArgumentException("a view is not of its array (made before the array grew?)");
    }
    try {
      SUM.invokeExact(level, src, offs, weights, groupEnds, outs, outputs, h, dst, dstAt, stride, stream ? 1 : 0);
    } catch (Throwable e) {
      throw new IllegalStateException("native row sum failed", e);
    }
  }

  /** Checks that {@code ends[0..n)} is a non-decreasing list of ends within {@code limit}; returns the last. */
  private static int ends(int[] ends, int n, int limit, String what) {
    if (ends.length < n) throw new IndexOutOfBoundsException(n + " " + what + " ends, array of " + ends.length);
    int prev = 0;
    for (int i = 0; i < n; i++) {
      if (ends[i] < prev || ends[i] > limit) throw new IndexOutOfBoundsException(what + " end " + i + " = " + ends[i] + " after " + prev + ", limit " + limit);
      prev = ends[i];
    }
    return prev;
  }
}
