package io.moeyard.engine.transport;

import io.moeyard.engine.DType;
import io.moeyard.engine.OffHeap;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Memory that the peers of one {@link Transport} can store into: what receive buffers, window
 * metadata and combine partials are carved from. On the in-JVM world any off-heap memory will do
 * ({@link #offHeap()}); on a process world it is this rank's shared-memory file, mapped by every
 * peer, so its size is fixed when it is made ({@link Transport#peerMemory}). Closing it frees (or
 * unmaps) everything carved from it; its owner closes it after the last collective that uses it.
 */
public interface PeerMemory extends AutoCloseable {
  /** {@code bytes} of zeroed memory aligned to {@code align}, valid until this memory is closed. */
  MemorySegment allocate(long bytes, long align);

  /** Zeroed rows (and FP8 scales) carved from this memory. */
  default RowBuffer rows(int rows, int hidden, DType dtype) {
    MemorySegment seg = allocate((long) rows * hidden * dtype.bytes(), 64);
    MemorySegment scales = dtype.hasScales()
        ? allocate((long) rows * (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES, 64)
        : null;
    return new RowBuffer(seg, 0, rows, hidden, dtype, scales);
  }

  /** Bytes a process world must reserve for {@link #rows}: the rows, the scales, and alignment slack. */
  static long rowsBytes(long rows, int hidden, DType dtype) {
    long scales = dtype.hasScales() ? rows * (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES + 64 : 0;
    return rows * hidden * dtype.bytes() + 64 + scales;
  }

  /** Frees or unmaps everything carved from this memory. */
  @Override
  void close();

  /** Plain off-heap memory of this JVM, unbounded: what peers that are threads of one JVM share. */
  static PeerMemory offHeap() {
    return new PeerMemory() {
      private final Arena arena = Arena.ofShared();

      @Override
      public MemorySegment allocate(long bytes, long align) {
        return OffHeap.allocate(arena, bytes, align);
      }

      @Override
      public RowBuffer rows(int rows, int hidden, DType dtype) {
        return RowBuffer.allocate(arena, rows, hidden, dtype); // huge-page advice for large buffers, as before
      }

      @Override
      public void close() {
        arena.close();
      }
    };
  }
}
