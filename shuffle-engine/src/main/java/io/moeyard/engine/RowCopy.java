package io.moeyard.engine;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Batched row copies for the CPU backend's scatters. Dispatch stores rows one by one into
 * receive buffers much larger than the caches; Java's stores make the CPU read every destination
 * line before writing it, which costs about half the bandwidth ({@code CopyKernelsBenchmark},
 * bench/results/cpu-2026-11-26.md). The small C helper built with this
 * module ({@code src/main/c/rowcopy.c} in {@link HostLibrary}) copies with non-temporal
 * stores; where it is missing (no C compiler at build time, another OS, native access denied,
 * {@code -Dmoeyard.rowcopy.disable=true}) the same copies run as {@code MemorySegment.copy}.
 * The bytes written are the same either way.
 */
public final class RowCopy {
  private static final MethodHandle COPY = handle("moeyard_copy_rows",
      FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS,
          ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG),
      Linker.Option.critical(true)); // heap offset arrays passed without copies; short, no callbacks
  private static final MethodHandle BLOCK = handle("moeyard_copy_at",
      FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
          ValueLayout.JAVA_LONG),
      Linker.Option.critical(false));

  private RowCopy() {}

  private static MethodHandle handle(String symbol, FunctionDescriptor fd, Linker.Option option) {
    if (Boolean.getBoolean("moeyard.rowcopy.disable")) return null;
    return HostLibrary.downcall(symbol, fd, option).orElse(null);
  }

  /** True when copies use the native streaming-store helper. */
  public static boolean nativeAvailable() {
    return COPY != null;
  }

  /**
   * Copies one block, {@code bytes} long, the same way (streaming stores where possible): used by
   * the unfused baseline's block copies and the bench's roofline, so that every path and the
   * roofline store the same way and their ratios compare data movement only.
   */
  public static void copy(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long bytes) {
    if (bytes <= 0) return;
    if (BLOCK != null && src.isNative() && dst.isNative()) {
      // bounds-checked before any store; offsets, not slices, so that a copy allocates nothing
      java.util.Objects.checkFromIndexSize(srcOff, bytes, src.byteSize());
      java.util.Objects.checkFromIndexSize(dstOff, bytes, dst.byteSize());
      if (dst.isReadOnly()) throw new IllegalArgumentException("the destination segment is read-only");
      try {
        BLOCK.invokeExact(dst, dstOff, src, srcOff, bytes);
        return;
      } catch (Throwable e) {
        throw new IllegalStateException("native block copy failed", e);
      }
    }
    MemorySegment.copy(src, srcOff, dst, dstOff, bytes);
  }

  /**
   * Copies {@code n} rows of {@code rowBytes}: {@code dst[dstOff[i]..]} from {@code src[srcOff[i]..]}.
   *
   * @throws IndexOutOfBoundsException if a row would fall outside its segment (checked before
   *     anything is copied)
   */
  public static void copyRows(MemorySegment src, long[] srcOff, MemorySegment dst, long[] dstOff, int n, long rowBytes) {
    copyRows(src, srcOff, null, dst, dstOff, null, n, rowBytes);
  }

  /**
   * As {@link #copyRows(MemorySegment, long[], MemorySegment, long[], int, long)}, with the
   * caller's views of its offset arrays ({@code MemorySegment.ofArray} of exactly {@code srcOff}
   * and {@code dstOff}, made once where the arrays are made; null: made here, per call), so that a
   * steady state of copies allocates nothing.
   */
  public static void copyRows(MemorySegment src, long[] srcOff, MemorySegment srcOffView, MemorySegment dst, long[] dstOff,
      MemorySegment dstOffView, int n, long rowBytes) {
    if (n <= 0 || rowBytes <= 0) return;
    if (srcOffView != null && srcOffView.byteSize() != (long) Long.BYTES * srcOff.length
        || dstOffView != null && dstOffView.byteSize() != (long) Long.BYTES * dstOff.length) {
      throw new IllegalArgumentException("an offset view is not of its offset array (made before the array grew?)");
    }
    long srcLimit = src.byteSize() - rowBytes;
    long dstLimit = dst.byteSize() - rowBytes;
    for (int i = 0; i < n; i++) {
      if (srcOff[i] < 0 || srcOff[i] > srcLimit || dstOff[i] < 0 || dstOff[i] > dstLimit) {
        throw new IndexOutOfBoundsException("row " + i + ": src offset " + srcOff[i] + ", dst offset " + dstOff[i]
            + ", " + rowBytes + " bytes, segments of " + src.byteSize() + " and " + dst.byteSize());
      }
      // the helper reads the views, this check the arrays: a view of another array would copy unchecked rows
      if (srcOffView != null && srcOffView.getAtIndex(ValueLayout.JAVA_LONG, i) != srcOff[i]
          || dstOffView != null && dstOffView.getAtIndex(ValueLayout.JAVA_LONG, i) != dstOff[i]) {
        throw new IllegalArgumentException("row " + i + ": an offset view does not hold its offset array's offsets");
      }
    }
    if (COPY != null && src.isNative() && dst.isNative()) {
      try {
        MemorySegment dstOffs = dstOffView != null ? dstOffView : MemorySegment.ofArray(dstOff);
        MemorySegment srcOffs = srcOffView != null ? srcOffView : MemorySegment.ofArray(srcOff);
        COPY.invokeExact(dst, dstOffs, src, srcOffs, n, rowBytes);
        return;
      } catch (Throwable e) {
        throw new IllegalStateException("native row copy failed", e);
      }
    }
    for (int i = 0; i < n; i++) MemorySegment.copy(src, srcOff[i], dst, dstOff[i], rowBytes);
  }
}
