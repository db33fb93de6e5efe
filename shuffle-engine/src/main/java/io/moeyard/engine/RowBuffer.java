package io.moeyard.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * A token-major block of rows in off-heap (or heap) memory: {@code rows x hidden} elements of
 * {@code dtype} starting at {@code offset} bytes into {@code segment}, row after row with no
 * padding. This is how JVM engines already hold activations, so moeyard takes them as they are
 * instead of wrapping them in a tensor class of its own.
 *
 * <p>For {@link DType#FP8_E4M3}, {@code scales} holds {@code rows x hidden/128} floats (one per
 * 128 channels, row-major); for other types it is null.
 */
public record RowBuffer(
    MemorySegment segment, long offset, int rows, int hidden, DType dtype, MemorySegment scales) {

  public RowBuffer {
    Objects.requireNonNull(segment, "segment");
    Objects.requireNonNull(dtype, "dtype");
    if (rows < 0) throw new IllegalArgumentException("rows must be >= 0, got " + rows);
    if (hidden <= 0) throw new IllegalArgumentException("hidden must be > 0, got " + hidden);
    if (offset < 0) throw new IllegalArgumentException("offset must be >= 0, got " + offset);
    long need = offset + (long) rows * hidden * dtype.bytes();
    if (need > segment.byteSize()) {
      throw new IllegalArgumentException(
          "segment of " + segment.byteSize() + " bytes is too small for " + rows + " rows x " + hidden
              + " " + dtype.cliName() + " at offset " + offset + " (needs " + need + ")");
    }
    if (dtype.hasScales()) {
      if (hidden % DType.FP8_SCALE_BLOCK != 0) {
        throw new IllegalArgumentException("fp8 needs hidden divisible by " + DType.FP8_SCALE_BLOCK + ", got " + hidden);
      }
      Objects.requireNonNull(scales, "fp8 rows need a scales segment (rows x hidden/128 floats)");
      long needScales = (long) rows * (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES;
      if (scales.byteSize() < needScales) {
        throw new IllegalArgumentException(
            "scales segment of " + scales.byteSize() + " bytes is too small for " + rows + " rows (needs " + needScales + ")");
      }
    } else if (scales != null) {
      throw new IllegalArgumentException("scales are only carried for fp8, not " + dtype.cliName());
    }
  }

  public static RowBuffer of(MemorySegment segment, int rows, int hidden, DType dtype) {
    return new RowBuffer(segment, 0, rows, hidden, dtype, null);
  }

  /** Allocates zeroed rows (and scales for FP8) in {@code arena}; large buffers get huge pages ({@link HugePages}). */
  public static RowBuffer allocate(Arena arena, int rows, int hidden, DType dtype) {
    MemorySegment seg = HugePages.allocate(arena, (long) rows * hidden * dtype.bytes());
    MemorySegment scales = null;
    if (dtype.hasScales()) {
      scales = OffHeap.allocate(arena, (long) rows * (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES, 64);
    }
    return new RowBuffer(seg, 0, rows, hidden, dtype, scales);
  }

  public long rowBytes() {
    return (long) hidden * dtype.bytes();
  }

  public long rowOffset(int row) {
    return offset + row * rowBytes();
  }

  public int scalesPerRow() {
    return dtype.hasScales() ? hidden / DType.FP8_SCALE_BLOCK : 0;
  }

  public long byteSize() {
    return rows * rowBytes();
  }

  /** Reads element {@code c} of {@code row} as float (FP8 without its scale). */
  public float getFloat(int row, int c) {
    long at = rowOffset(row) + (long) c * dtype.bytes();
    return switch (dtype) {
      case BF16 -> Numerics.bf16ToFloat(segment.get(ValueLayout.JAVA_SHORT_UNALIGNED, at));
      case FP16 -> Numerics.fp16ToFloat(segment.get(ValueLayout.JAVA_SHORT_UNALIGNED, at));
      case FP32 -> segment.get(ValueLayout.JAVA_FLOAT_UNALIGNED, at);
      case FP8_E4M3 -> Numerics.fp8E4m3ToFloat(segment.get(ValueLayout.JAVA_BYTE, at));
    };
  }

  /** Stores {@code v} into element {@code c} of {@code row}, rounded to nearest even. */
  public void setFloat(int row, int c, float v) {
    long at = rowOffset(row) + (long) c * dtype.bytes();
    switch (dtype) {
      case BF16 -> segment.set(ValueLayout.JAVA_SHORT_UNALIGNED, at, Numerics.floatToBf16(v));
      case FP16 -> segment.set(ValueLayout.JAVA_SHORT_UNALIGNED, at, Numerics.floatToFp16(v));
      case FP32 -> segment.set(ValueLayout.JAVA_FLOAT_UNALIGNED, at, v);
      case FP8_E4M3 -> throw new UnsupportedOperationException("moeyard never rounds into fp8");
    }
  }
}
