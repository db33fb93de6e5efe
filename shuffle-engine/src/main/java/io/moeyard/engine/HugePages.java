package io.moeyard.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;

/**
 * Off-heap allocation for row buffers. Dispatch stores rows at scattered positions of large
 * buffers, and with 4 KiB pages nearly every row store is a TLB miss (measured: random 4 KiB row
 * stores into a 32 MiB buffer ran 2-3x slower than the same stores into a buffer backed by
 * transparent huge pages, on a VM where a miss costs a nested page walk). Buffers of at least
 * {@link #THRESHOLD} bytes are therefore 2 MiB aligned and advised {@code MADV_HUGEPAGE} before
 * first touch; where that is not possible (not Linux, native access denied) they are plain
 * allocations and everything still works.
 */
public final class HugePages {
  /** Below this, the TLB covers the buffer anyway. */
  public static final long THRESHOLD = 4L << 20;

  private static final long HUGE_PAGE = 2L << 20;
  private static final int MADV_HUGEPAGE = 14;
  private static final MethodHandle MADVISE = lookupMadvise();

  private HugePages() {}

  private static MethodHandle lookupMadvise() {
    if (!System.getProperty("os.name", "").toLowerCase(Locale.ROOT).contains("linux")) return null;
    if (Boolean.getBoolean("moeyard.hugepages.disable")) return null;
    try {
      Linker linker = Linker.nativeLinker();
      return linker.defaultLookup().find("madvise")
          .map(addr -> linker.downcallHandle(addr,
              FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT)))
          .orElse(null);
    } catch (RuntimeException | LinkageError e) {
      return null; // e.g. native access not enabled for this module: plain pages
    }
  }

  /** True when large buffers get transparent huge pages advice. */
  public static boolean available() {
    return MADVISE != null;
  }

  /** Allocates {@code bytes} (zeroed) in {@code arena}, huge-page backed when large and possible. */
  public static MemorySegment allocate(Arena arena, long bytes) {
    if (bytes < THRESHOLD || MADVISE == null) return arena.allocate(Math.max(1, bytes), 64);
    long rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    // Arena zeroes what it allocates, which touches the pages: so allocate uninitialised-size
    // capacity aligned to 2 MiB, advise, then zero ourselves (the first touch after advice).
    MemorySegment seg = arena.allocate(rounded, HUGE_PAGE);
    try {
      int rc = (int) MADVISE.invokeExact(seg, rounded, MADV_HUGEPAGE);
      if (rc == 0) seg.fill((byte) 0);
    } catch (Throwable ignored) {
      // advice is an optimisation only
    }
    return seg.asSlice(0, bytes);
  }
}
