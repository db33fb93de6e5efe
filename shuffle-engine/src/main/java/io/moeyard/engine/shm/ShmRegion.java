package io.moeyard.engine.shm;

import io.moeyard.engine.transport.PeerMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One round of {@link RegionTable#create}: this rank's shared-memory file and those of the peers
 * it reaches, all mapped into this process (one arena, so closing it unmaps them all). Allocation carves this
 * rank's own file front to back; nothing is freed before {@link #close()}, which is why the file
 * is sized for everything its owner will carve, once.
 */
final class ShmRegion implements PeerMemory {
  final int id;
  private final RegionTable table;
  private final Arena arena;
  /** Every rank's file as this process maps it, by rank; null for a rank it does not reach. */
  final MemorySegment[] maps;
  private final MemorySegment own;
  private long used;
  private volatile boolean closed;

  ShmRegion(RegionTable table, int id, Arena arena, MemorySegment[] maps, int rank) {
    this.table = table;
    this.id = id;
    this.arena = arena;
    this.maps = maps;
    this.own = maps[rank];
  }

  @Override
  public synchronized MemorySegment allocate(long bytes, long align) {
    if (closed) throw new IllegalStateException("this peer memory is closed");
    if (bytes < 0 || align <= 0 || Long.bitCount(align) != 1) {
      throw new IllegalArgumentException("bad allocation: " + bytes + " bytes aligned to " + align);
    }
    long base = own.address();
    long at = ((base + used + align - 1) & -align) - base;
    if (at + bytes > own.byteSize()) {
      throw new IllegalStateException("peer memory region " + id + " of " + own.byteSize() + " bytes is full: " + bytes
          + " more bytes asked with " + used + " used (it was sized for less than is carved from it)");
    }
    used = at + bytes;
    return own.asSlice(at, bytes);
  }

  /** True when {@code s} lies in this rank's own file. */
  boolean containsOwn(MemorySegment s) {
    long a = s.address();
    return s.isNative() && a >= own.address() && a + s.byteSize() <= own.address() + own.byteSize();
  }

  long offsetOf(MemorySegment s) {
    return s.address() - own.address();
  }

  @Override
  public void close() {
    if (closed) return;
    closed = true;
    table.forget(this);
    arena.close();
  }
}
