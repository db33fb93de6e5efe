package io.moeyard.cuda;

import io.moeyard.engine.DType;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Token-major rows in device memory: {@code rows x hidden} elements of {@code dtype} at the raw
 * device address {@code address}, row after row with no padding; for FP8-E4M3 also
 * {@code rows x hidden/128} float scales at {@code scalesAddress} (0 for other dtypes). The
 * device-memory twin of {@link io.moeyard.engine.RowBuffer}.
 *
 * <p>Why raw {@code long}s and not {@link MemorySegment}s: a device address is not host memory, so
 * a segment over it could only ever be a zero-length token that must never be dereferenced, and
 * every GPU runtime a JVM engine links hands device pointers out as integers already (PyTorch's
 * {@code data_ptr()}, TornadoVM, JCuda, the org.bytedeco presets' {@code Pointer.address()}).
 * {@link #of(MemorySegment, int, int, DType, MemorySegment)} takes zero-length native segments
 * for engines that carry addresses that way, and refuses heap segments with a clear error.
 * The communicator checks every address with {@code cudaPointerGetAttributes} before a call.
 */
public record DeviceRows(long address, int rows, int hidden, DType dtype, long scalesAddress) {

  public DeviceRows {
    Objects.requireNonNull(dtype, "dtype");
    if (address == 0) throw new IllegalArgumentException("device rows: address is 0 (null)");
    if (rows < 0) throw new IllegalArgumentException("device rows: rows must be >= 0, got " + rows);
    if (hidden <= 0) throw new IllegalArgumentException("device rows: hidden must be > 0, got " + hidden);
    if (dtype.hasScales()) {
      if (hidden % DType.FP8_SCALE_BLOCK != 0) {
        throw new IllegalArgumentException("device rows: fp8 needs hidden divisible by " + DType.FP8_SCALE_BLOCK + ", got " + hidden);
      }
      if (scalesAddress == 0) throw new IllegalArgumentException("device rows: fp8 rows need a scales address (rows x hidden/128 floats)");
    } else if (scalesAddress != 0) {
      throw new IllegalArgumentException("device rows: scales are only carried for fp8, not " + dtype.cliName());
    }
  }

  /** Rows without scales (every dtype but FP8). */
  public static DeviceRows of(long address, int rows, int hidden, DType dtype) {
    return new DeviceRows(address, rows, hidden, dtype, 0L);
  }

  /**
   * Rows at the address of {@code segment} (typically zero-length: {@code MemorySegment.ofAddress(ptr)}),
   * scales at {@code scales}' (null unless FP8). Heap segments are refused: their memory moves and a
   * kernel cannot reach it.
   */
  public static DeviceRows of(MemorySegment segment, int rows, int hidden, DType dtype, MemorySegment scales) {
    return new DeviceRows(addressOf(segment, "rows"), rows, hidden, dtype, scales == null ? 0L : addressOf(scales, "scales"));
  }

  static long addressOf(MemorySegment s, String what) {
    Objects.requireNonNull(s, what);
    if (!s.isNative()) {
      throw new IllegalArgumentException(what + ": a heap segment cannot be device memory (use a native segment of the device address)");
    }
    return s.address();
  }

  /** Bytes of one row. */
  public long rowBytes() {
    return (long) hidden * dtype.bytes();
  }

  /** Scales per row (0 unless FP8). */
  public int scalesPerRow() {
    return dtype.hasScales() ? hidden / DType.FP8_SCALE_BLOCK : 0;
  }

  /** Bytes of all rows. */
  public long byteSize() {
    return rows * rowBytes();
  }

  /** Bytes of all scales. */
  public long scalesByteSize() {
    return (long) rows * scalesPerRow() * Float.BYTES;
  }

  /** The first {@code n} rows (same addresses). */
  public DeviceRows first(int n) {
    if (n < 0 || n > rows) throw new IllegalArgumentException("first(" + n + ") of " + rows + " rows");
    return new DeviceRows(address, n, hidden, dtype, scalesAddress);
  }
}
