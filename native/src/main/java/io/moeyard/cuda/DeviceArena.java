package io.moeyard.cuda;

import java.util.ArrayList;
import java.util.List;

/** Device allocations released together (the native library owns them; this only tracks). */
final class DeviceArena {
  private final List<Long> ptrs = new ArrayList<>();

  long alloc(long bytes) {
    long p = NativeKernels.malloc(bytes);
    ptrs.add(p);
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

  void close() {
    for (long p : ptrs) {
      NativeKernels.free(p);
    }
    ptrs.clear();
  }
}
