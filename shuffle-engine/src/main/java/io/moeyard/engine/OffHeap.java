package io.moeyard.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Every off-heap byte moeyard allocates goes through here, so that what is live can be counted:
 * the JVM's own pools do not see memory that {@link Arena}s allocate, and a component that
 * forgets to close its arena would otherwise only show up as a process that grows until the
 * kernel kills it. {@link #liveBytes()} is what tests and reports read.
 */
public final class OffHeap {
  private OffHeap() {}

  private static final AtomicLong LIVE = new AtomicLong();

  /** Bytes allocated through this class whose arena is still open. */
  public static long liveBytes() {
    return LIVE.get();
  }

  /** {@code bytes} (at least 1) of zeroed memory aligned to {@code align}, freed when {@code arena} closes. */
  public static MemorySegment allocate(Arena arena, long bytes, long align) {
    long n = Math.max(1, bytes);
    MemorySegment seg = arena.allocate(n, align);
    return counted(seg, arena, n, null);
  }

  /**
   * {@code seg} (memory this class did not allocate, e.g. a mapping) as a segment of {@code arena}
   * that counts {@code bytes} as live until the arena closes, then runs {@code free} (may be null).
   */
  static MemorySegment counted(MemorySegment seg, Arena arena, long bytes, Runnable free) {
    LIVE.addAndGet(bytes);
    return MemorySegment.ofAddress(seg.address()).reinterpret(seg.byteSize(), arena, s -> {
      LIVE.addAndGet(-bytes);
      if (free != null) free.run();
    });
  }
}
