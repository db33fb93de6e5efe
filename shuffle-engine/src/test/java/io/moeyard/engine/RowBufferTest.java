package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

class RowBufferTest {
  @Test
  void allocationsAreZeroedAndExactlySized() {
    try (Arena arena = Arena.ofConfined()) {
      for (long bytes : new long[] {0, 1, 4095, HugePages.THRESHOLD - 1, HugePages.THRESHOLD, HugePages.THRESHOLD + 12345}) {
        MemorySegment s = HugePages.allocate(arena, bytes);
        assertEquals(Math.max(1, bytes), s.byteSize(), "size of a " + bytes + "-byte allocation");
        for (long i = 0; i < s.byteSize(); i += 4093) assertEquals(0, s.get(ValueLayout.JAVA_BYTE, i));
        if (bytes > 0) s.set(ValueLayout.JAVA_BYTE, bytes - 1, (byte) 1); // writable to the end
      }
      RowBuffer b = RowBuffer.allocate(arena, 3, 256, DType.FP8_E4M3);
      assertEquals(3 * 256, b.byteSize());
      assertEquals(2, b.scalesPerRow());
      assertTrue(b.scales().byteSize() >= 3 * 2 * Float.BYTES);
    }
  }

  @Test
  void rejectsBuffersThatCannotHoldTheRows() {
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment s = arena.allocate(100);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RowBuffer.of(s, 4, 16, DType.BF16));
      assertTrue(e.getMessage().contains("segment of 100 bytes is too small for 4 rows x 16 bf16"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new RowBuffer(arena.allocate(4096), 0, 2, 100, DType.FP8_E4M3, arena.allocate(64)));
      assertTrue(e.getMessage().contains("fp8 needs hidden divisible by 128, got 100"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new RowBuffer(arena.allocate(4096), 0, 2, 16, DType.BF16, arena.allocate(64)));
      assertTrue(e.getMessage().contains("scales are only carried for fp8"), e.getMessage());
    }
  }

  @Test
  void floatAccessRoundsPerDtype() {
    try (Arena arena = Arena.ofConfined()) {
      for (DType dt : new DType[] {DType.BF16, DType.FP16, DType.FP32}) {
        RowBuffer b = RowBuffer.allocate(arena, 2, 3, dt);
        b.setFloat(1, 2, 1.0f + 0x1p-12f);
        float want = switch (dt) {
          case BF16, FP16 -> 1.0f; // below half an ulp of both 16-bit types
          default -> 1.0f + 0x1p-12f;
        };
        assertEquals(want, b.getFloat(1, 2), dt.toString());
        assertEquals(0f, b.getFloat(0, 0));
      }
    }
  }
}
