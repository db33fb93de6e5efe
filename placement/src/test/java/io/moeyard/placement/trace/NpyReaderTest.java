package io.moeyard.placement.trace;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NpyReaderTest {
  @TempDir Path dir;

  /** A .npy file built by hand, so the reader is not only tested against our own writer. */
  private Path npy(String header, int major, byte[] data) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    b.write(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', (byte) major, 0});
    byte[] h = (header + "\n").getBytes(StandardCharsets.ISO_8859_1);
    if (major == 1) {
      b.write(h.length & 0xff);
      b.write(h.length >> 8);
    } else {
      b.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(h.length).array());
    }
    b.write(h);
    b.write(data);
    Path f = Files.createTempFile(dir, "t", ".npy");
    Files.write(f, b.toByteArray());
    return f;
  }

  private static byte[] le16(int... v) {
    ByteBuffer bb = ByteBuffer.allocate(2 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int x : v) bb.putShort((short) x);
    return bb.array();
  }

  private static byte[] i32(ByteOrder o, int... v) {
    ByteBuffer bb = ByteBuffer.allocate(4 * v.length).order(o);
    for (int x : v) bb.putInt(x);
    return bb.array();
  }

  @Test
  void readsInt16WithMinusOne() throws IOException {
    Path f = npy("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1, 3), }", 1, le16(5, -1, 7, 0, 1, 2));
    NpyArray a = NpyReader.read(f);
    assertArrayEquals(new int[] {2, 1, 3}, a.shape());
    assertArrayEquals(new int[] {5, -1, 7, 0, 1, 2}, a.data());
    RoutingTrace t = RoutingTrace.of("t", a, 8);
    assertEquals(-1, t.expert(0, 0, 1));
    assertEquals(2, t.expert(1, 0, 2));
  }

  @Test
  void readsInt32BothByteOrdersAndVersion2() throws IOException {
    Path le = npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2, 2), }", 2, i32(ByteOrder.LITTLE_ENDIAN, 300, -1, 70000, 3));
    assertArrayEquals(new int[] {300, -1, 70000, 3}, NpyReader.read(le).data());
    Path be = npy("{'descr': '>i4', 'fortran_order': False, 'shape': (1, 2, 2), }", 1, i32(ByteOrder.BIG_ENDIAN, 1, 2, 3, 4));
    assertArrayEquals(new int[] {1, 2, 3, 4}, NpyReader.read(be).data());
  }

  @Test
  void writerRoundTrips() throws IOException {
    int[] data = {0, 1, -1, 40000, 5, 6};
    Path f = dir.resolve("w.npy");
    try (var os = Files.newOutputStream(f)) {
      NpyWriter.write(os, new int[] {1, 2, 3}, data);
    }
    NpyArray a = NpyReader.read(f);
    assertEquals("<i4", a.dtype()); // 40000 does not fit int16
    assertArrayEquals(data, a.data());
    assertEquals(0, (Files.size(f) - 6 * 4) % 64, "data starts on a 64-byte boundary as NumPy writes it");
  }

  @Test
  void refusesMalformedFiles() throws IOException {
    Path empty = Files.createFile(dir.resolve("empty.npy"));
    assertMessage(empty, "empty");
    Path noShape = npy("{'descr': '<i2', 'fortran_order': False, }", 1, le16(1));
    assertMessage(noShape, "'shape'");
    Path floats = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }", 1, i32(ByteOrder.LITTLE_ENDIAN, 0));
    assertMessage(floats, "<f4");
    Path fortran = npy("{'descr': '<i2', 'fortran_order': True, 'shape': (1, 1, 1), }", 1, le16(1));
    assertMessage(fortran, "Fortran");
    Path truncated = npy("{'descr': '<i2', 'fortran_order': False, 'shape': (4, 1, 2), }", 1, le16(1, 2, 3));
    assertMessage(truncated, "truncated");
    Path badMagic = dir.resolve("bad.npy");
    Files.writeString(badMagic, "hello world, not numpy");
    assertMessage(badMagic, "magic");
    Path twoD = npy("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }", 1, le16(1, 2, 3, 4, 5, 6));
    var e = assertThrows(TraceFormatException.class, () -> RoutingTrace.of("x", NpyReader.read(twoD), 0));
    assertTrue(e.getMessage().contains("3-D"), e.getMessage());
  }

  @Test
  void refusesIdsOutOfRange() throws IOException {
    Path f = npy("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1, 2), }", 1, le16(0, 1, 9, -2));
    var e = assertThrows(TraceFormatException.class, () -> RoutingTrace.of("f", NpyReader.read(f), 8));
    assertTrue(e.getMessage().contains("expert id 9 at token 1, layer 0, slot 0"), e.getMessage());
  }

  private static void assertMessage(Path f, String part) {
    var e = assertThrows(TraceFormatException.class, () -> NpyReader.read(f));
    assertTrue(e.getMessage().contains(part), e.getMessage());
  }
}
