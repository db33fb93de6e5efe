package io.moeyard.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;

/**
 * Off-heap allocation for row buffers. Dispatch stores rows at scattered positions of large
 * buffers, and with 4 KiB pages nearly every row store misses the TLB (on a VM each miss is a
 * nested page walk). Buffers of at least {@link #THRESHOLD} bytes are therefore mapped
 * anonymously ({@code mmap}: zero pages that are only materialised on first touch), 2 MiB
 * aligned and advised {@code MADV_HUGEPAGE} before that first touch, so the kernel backs them with
 * transparent huge pages where it can; {@code Arena.allocate} cannot be used for this because it
 * zeroes, hence touches, every page before any advice could be given. The mapping is unmapped
 * when the arena closes. Where any of this is unavailable (not Linux, native access not enabled,
 * {@code -Dmoeyard.hugepages.disable=true}) buffers are plain arena allocations.
 */
public final class HugePages {
  /** Below this, the TLB covers the buffer anyway. */
  public static final long THRESHOLD = 4L << 20;

  private static final long HUGE_PAGE = 2L << 20;
  private static final int PROT_READ_WRITE = 0x1 | 0x2;
  private static final int MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20;
  private static final int MADV_HUGEPAGE = 14;
  private static final Native NATIVE = Native.lookup();

  private HugePages() {}

  private record Native(MethodHandle mmap, MethodHandle munmap, MethodHandle madvise) {
    static Native lookup() {
      if (!System.getProperty("os.name", "").toLowerCase(Locale.ROOT).contains("linux")) return null;
      if (Boolean.getBoolean("moeyard.hugepages.disable")) return null;
      try {
        Linker linker = Linker.nativeLinker();
        SymbolLookup libc = linker.defaultLookup();
        MethodHandle mmap = linker.downcallHandle(libc.find("mmap").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
        MethodHandle munmap = linker.downcallHandle(libc.find("munmap").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
        MethodHandle madvise = linker.downcallHandle(libc.find("madvise").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
        return new Native(mmap, munmap, madvise);
      } catch (RuntimeException | LinkageError e) {
        return null; // e.g. native access denied to this module: plain pages
      }
    }
  }

  /** True when large buffers are mapped with huge-page advice. */
  public static boolean available() {
    return NATIVE != null;
  }

  /** Allocates {@code bytes} of zeroed memory that lives as long as {@code arena}. */
  public static MemorySegment allocate(Arena arena, long bytes) {
    if (bytes < THRESHOLD || NATIVE == null) return OffHeap.allocate(arena, bytes, 64);
    long length = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    long mapped = length + HUGE_PAGE; // slack to align the start to a huge page
    MemorySegment base;
    try {
      base = (MemorySegment) NATIVE.mmap().invokeExact(MemorySegment.NULL, mapped, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0L);
    } catch (Throwable e) {
      return OffHeap.allocate(arena, bytes, 64);
    }
    if (base.address() == -1L || base.address() == 0L) return OffHeap.allocate(arena, bytes, 64); // MAP_FAILED
    long start = (base.address() + HUGE_PAGE - 1) & -HUGE_PAGE;
    MemorySegment aligned = MemorySegment.ofAddress(start).reinterpret(length);
    try {
      int ignored = (int) NATIVE.madvise().invokeExact(aligned, length, MADV_HUGEPAGE);
    } catch (Throwable ignored) {
      // advice is an optimisation only
    }
    long baseAddress = base.address();
    MethodHandle munmap = NATIVE.munmap();
    return OffHeap.counted(MemorySegment.ofAddress(start).reinterpret(bytes), arena, mapped, () -> {
      try {
        int ignored = (int) munmap.invokeExact(MemorySegment.ofAddress(baseAddress), mapped);
      } catch (Throwable ignored) {
        // nothing useful to do while an arena closes
      }
    });
  }
}
