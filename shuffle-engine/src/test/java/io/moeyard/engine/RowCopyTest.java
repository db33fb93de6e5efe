package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class RowCopyTest {
  @Test
  void theHelperIsBuiltAndLoadsWhereACompilerExists() {
    // the module's build compiles it with the system C compiler (build-host.sh); without one the
    // build passes and Java copies are used, so only insist where a compiler is on the PATH
    boolean compiler = java.util.Arrays.stream(System.getenv().getOrDefault("PATH", "").split(":"))
        .anyMatch(d -> java.nio.file.Files.isExecutable(java.nio.file.Path.of(d, "cc")));
    org.junit.jupiter.api.Assumptions.assumeTrue(compiler, "no C compiler on the PATH: the helper is not built here");
    assertTrue(RowCopy.nativeAvailable(), "libmoeyard_host.so did not load: the CPU backend would fall back to Java copies");
  }

  @Test
  void copiesExactlyTheRowsAskedForAlignedOrNot() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    try (Arena arena = Arena.ofConfined()) {
      for (int trial = 0; trial < 200; trial++) {
        long rowBytes = rnd.nextBoolean() ? 64L * (1 + rnd.nextInt(70)) : 1 + rnd.nextInt(300);
        int rows = 1 + rnd.nextInt(40);
        long shift = rnd.nextInt(3) == 0 ? rnd.nextInt(64) : 0; // unaligned destinations too
        MemorySegment src = arena.allocate(rows * rowBytes, 64);
        MemorySegment dst = arena.allocate(rows * rowBytes * 2 + shift, 64);
        for (long i = 0; i < src.byteSize(); i++) src.set(ValueLayout.JAVA_BYTE, i, (byte) rnd.nextInt());
        dst.fill((byte) 0x55);
        int n = rnd.nextInt(rows + 1);
        long[] so = new long[n];
        long[] dof = new long[n];
        boolean[] used = new boolean[rows * 2];
        for (int i = 0; i < n; i++) {
          so[i] = rnd.nextInt(rows) * rowBytes;
          int slot;
          do slot = rnd.nextInt(rows * 2); while (used[slot]);
          used[slot] = true;
          dof[i] = shift + slot * rowBytes;
        }
        RowCopy.copyRows(src, so, dst, dof, n, rowBytes);
        String ctx = seed + " trial " + trial;
        for (int slot = 0; slot < rows * 2; slot++) {
          long at = shift + slot * rowBytes;
          int who = -1;
          for (int i = 0; i < n; i++) if (dof[i] == at) who = i;
          for (long b = 0; b < rowBytes; b++) {
            byte want = who < 0 ? (byte) 0x55 : src.get(ValueLayout.JAVA_BYTE, so[who] + b);
            assertEquals(want, dst.get(ValueLayout.JAVA_BYTE, at + b), ctx + " slot " + slot + " byte " + b);
          }
        }
      }
    }
  }

  @Test
  void blockCopiesMatchMemorySegmentCopy() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    try (Arena arena = Arena.ofConfined()) {
      for (int trial = 0; trial < 100; trial++) {
        long bytes = rnd.nextBoolean() ? 64L * rnd.nextInt(200) : rnd.nextInt(5000);
        long so = rnd.nextInt(100);
        long dof = rnd.nextBoolean() ? 64 * rnd.nextInt(3) : rnd.nextInt(100);
        MemorySegment src = arena.allocate(so + bytes + 1, 64);
        for (long i = 0; i < src.byteSize(); i++) src.set(ValueLayout.JAVA_BYTE, i, (byte) rnd.nextInt());
        MemorySegment a = arena.allocate(dof + bytes + 64, 64);
        MemorySegment b = arena.allocate(dof + bytes + 64, 64);
        a.fill((byte) 9);
        b.fill((byte) 9);
        RowCopy.copy(src, so, a, dof, bytes);
        MemorySegment.copy(src, so, b, dof, bytes);
        assertEquals(-1, a.mismatch(b), seed + " trial " + trial);
      }
      MemorySegment small = arena.allocate(100, 64);
      assertThrows(IndexOutOfBoundsException.class, () -> RowCopy.copy(small, 0, small, 50, 64));
    }
  }

  @Test
  void refusesRowsOutsideTheSegmentsBeforeCopyingAnything() {
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment src = arena.allocate(256, 64);
      MemorySegment dst = arena.allocate(256, 64);
      dst.fill((byte) 7);
      IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
          () -> RowCopy.copyRows(src, new long[] {0, 0}, dst, new long[] {0, 192}, 2, 128));
      assertTrue(e.getMessage().contains("dst offset 192"), e.getMessage());
      for (long i = 0; i < 256; i++) assertEquals(7, dst.get(ValueLayout.JAVA_BYTE, i));
    }
  }

  /** The block copy's helper takes offsets, not slices: every bad offset still fails before a byte moves. */
  @Test
  void aBlockCopyOutsideEitherSegmentFailsBeforeCopyingAnything() {
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment src = arena.allocate(256, 64);
      MemorySegment dst = arena.allocate(256, 64);
      src.fill((byte) 1);
      dst.fill((byte) 7);
      long[][] bad = {{-64, 0}, {0, -64}, {200, 0}, {0, 200}, {Long.MAX_VALUE - 10, 0}, {0, Long.MAX_VALUE - 10}, {256, 256}};
      for (long[] b : bad) {
        assertThrows(IndexOutOfBoundsException.class, () -> RowCopy.copy(src, b[0], dst, b[1], 64), b[0] + ", " + b[1]);
      }
      assertThrows(IllegalArgumentException.class, () -> RowCopy.copy(src, 0, dst.asReadOnly(), 0, 64));
      for (long i = 0; i < 256; i++) assertEquals(7, dst.get(ValueLayout.JAVA_BYTE, i));
      RowCopy.copy(src, 192, dst, 192, 64); // the last row in bounds still copies
      assertEquals(1, dst.get(ValueLayout.JAVA_BYTE, 255));
    }
  }

  /**
   * The helper reads the offsets through the caller's views, the bounds check reads the arrays:
   * a view of another array (of the same length) must be refused, not copy from offsets nobody
   * checked.
   */
  @Test
  void aViewOfAnotherOffsetArrayIsRefusedBeforeCopyingAnything() {
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment src = arena.allocate(256, 64);
      MemorySegment dst = arena.allocate(256, 64);
      src.fill((byte) 1);
      dst.fill((byte) 7);
      long[] srcOff = {0, 64};
      long[] dstOff = {0, 64};
      MemorySegment otherSrc = MemorySegment.ofArray(new long[] {0, 256}); // past src's end
      MemorySegment otherDst = MemorySegment.ofArray(new long[] {0, 128});
      assertThrows(IllegalArgumentException.class,
          () -> RowCopy.copyRows(src, srcOff, otherSrc, dst, dstOff, MemorySegment.ofArray(dstOff), 2, 64));
      assertThrows(IllegalArgumentException.class,
          () -> RowCopy.copyRows(src, srcOff, MemorySegment.ofArray(srcOff), dst, dstOff, otherDst, 2, 64));
      for (long i = 0; i < 256; i++) assertEquals(7, dst.get(ValueLayout.JAVA_BYTE, i), "byte " + i);
      RowCopy.copyRows(src, srcOff, MemorySegment.ofArray(srcOff), dst, dstOff, MemorySegment.ofArray(dstOff), 2, 64);
      assertEquals(1, dst.get(ValueLayout.JAVA_BYTE, 127));
      assertEquals(7, dst.get(ValueLayout.JAVA_BYTE, 128));
    }
  }
}
