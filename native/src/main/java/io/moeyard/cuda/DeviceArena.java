package io.moeyard.cuda;

import java.util.ArrayList;
import java.util.List;

/** Device allocations released together (the native library owns them; this only tracks). */
final class DeviceArena {
  private final List<long[]> ptrs = new ArrayList<>();

  long alloc(long bytes) {
    long p = NativeKernels.malloc(bytes);
    ptrs.add(new long[] {p, bytes});
    return p;
  }

  long ints(int[] a) {
    long p = alloc(4L * a.length);
    NativeKernels.intsToDevice(a, 0, a.length, p);
    return p;
  }

  long longs(long[] a) {
    long p = alloc(8L * a.length);
    NativeKernels.longsToDevice(a, 0, a.length, p);
    return p;
  }

  /** Whether {@code [address, address + bytes)} meets one of these allocations. */
  boolean overlaps(long address, long bytes) {
    long end = address + Math.max(1, bytes);
    for (long[] a : ptrs) {
      if (address < a[0] + Math.max(1, a[1]) && a[0] < end) return true;
    }
    return false;
  }

  void close() {
    for (long[] p : ptrs) {
      NativeKernels.free(p[0]);
    }
    ptrs.clear();
  }
}
