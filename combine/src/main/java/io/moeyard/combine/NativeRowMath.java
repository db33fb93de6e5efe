package io.moeyard.combine;

import io.moeyard.engine.HostLibrary;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Combine's BF16 sums in the host helper ({@code rowsum.c} of {@link HostLibrary}): the same
 * operations and bits as {@link VectorRowMath#sumGroupsStoreBf16}, about twice as fast on
 * AVX-512 (the rounding to BF16 is one instruction where the CPU has AVX512_BF16), and able to
 * store with streaming stores, so that a partial goes to its home rank straight from registers.
 * Used where the helper loaded and the CPU has AVX-512, unless {@code
 * -Dmoeyard.rowsum.disable=true}; otherwise {@link RowMath} sums in Java.
 */
final class NativeRowMath {
  private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
  /**
   * The best rounding this CPU has: 2 = AVX512_BF16's conversion, 1 = AVX-512 integer rounding,
   * 0 = no native sums (no helper, no AVX-512, or {@code -Dmoeyard.rowsum.disable=true}).
   */
  static final int LEVEL = level();

  private static final MethodHandle SUM = LEVEL == 0 ? null : HostLibrary.downcall("moeyard_sum_bf16",
      FunctionDescriptor.ofVoid(INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS, INT,
          ValueLayout.ADDRESS, INT, INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, INT),
      Linker.Option.critical(true)) // heap term arrays passed without copies; short, no callbacks
      .orElse(null);

  /** True when {@link #sumBf16} may be called. */
  static final boolean AVAILABLE = SUM != null;

  private NativeRowMath() {}

  private static int level() {
    if (Boolean.getBoolean("moeyard.rowsum.disable")) return 0;
    MethodHandle level = HostLibrary.downcall("moeyard_rowsum_level", FunctionDescriptor.of(INT)).orElse(null);
    if (level == null) return 0;
    try {
      return (int) level.invokeExact();
    } catch (Throwable e) {
      return 0;
    }
  }

  /**
   * The BF16 row at {@code dstAt} of {@code dst} becomes the grouped weighted sum of the first
   * {@code n} BF16 rows at byte offsets {@code off} of {@code src}: {@link RowMath#sumGroupsStore}'s
   * definition, with groups ending at {@code groupEnd[0..groups)}, or {@link RowMath#sumStore}'s
   * single-level sum when {@code groupEnd == null}; {@code w == null} sums unweighted. With {@code stream} the row is written with streaming stores where aligned, and
   * the caller must call {@link io.moeyard.engine.RowCopy#storeFence} before others read it.
   *
   * @throws IndexOutOfBoundsException if a row lies outside its segment (checked before the call)
   */
  static void sumBf16(MemorySegment src, long[] off, float[] w, int n, int[] groupEnd, int groups, int h,
      MemorySegment dst, long dstAt, boolean stream) {
    sumBf16(LEVEL, src, off, w, n, groupEnd, groups, h, dst, dstAt, stream);
  }

  /** {@link #sumBf16} with the rounding of {@code level} (1 or 2, at most {@link #LEVEL}): tests run both. */
  static void sumBf16(int level, MemorySegment src, long[] off, float[] w, int n, int[] groupEnd, int groups, int h,
      MemorySegment dst, long dstAt, boolean stream) {
    if (level < 1 || level > LEVEL) throw new IllegalArgumentException("rounding level " + level + ", this CPU has " + LEVEL);
    if (groupEnd != null && (groups < 1 || groupEnd[groups - 1] != n)) {
      throw new IllegalArgumentException(groups + " groups do not end at term " + n);
    }
    long rowBytes = 2L * h;
    long srcLimit = src.byteSize() - rowBytes;
    for (int i = 0; i < n; i++) {
      if (off[i] < 0 || off[i] > srcLimit) throw new IndexOutOfBoundsException("row offset " + off[i] + " outside " + src);
    }
    if (dstAt < 0 || dstAt > dst.byteSize() - rowBytes) throw new IndexOutOfBoundsException("row offset " + dstAt + " outside " + dst);
    if (n < 1 || off.length < n || h < 1) throw new IllegalArgumentException(n + " terms of " + off.length + " offsets, hidden " + h);
    if (w != null && w.length < n) throw new IndexOutOfBoundsException(n + " terms, " + w.length + " weights");
    if (!src.isNative() || !dst.isNative()) throw new IllegalArgumentException("native sums need off-heap rows");
    try {
      MemorySegment weights = w == null ? MemorySegment.NULL : MemorySegment.ofArray(w);
      MemorySegment ends = groupEnd == null ? MemorySegment.NULL : MemorySegment.ofArray(groupEnd);
      SUM.invokeExact(level, src, MemorySegment.ofArray(off), weights, n, ends, groups, h, dst, dstAt, stream ? 1 : 0);
    } catch (Throwable e) {
      throw new IllegalStateException("native row sum failed", e);
    }
  }
}
