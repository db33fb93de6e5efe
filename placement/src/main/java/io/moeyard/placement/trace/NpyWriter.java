package io.moeyard.placement.trace;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Writes integer arrays as {@code .npy} version 1.0, little endian, C order: the narrowest of
 * int16 / int32 that holds every value, as routing traces are usually stored.
 */
public final class NpyWriter {
  private NpyWriter() {}

  public static void write(OutputStream rawOut, int[] shape, int[] data) throws IOException {
    write(rawOut, shape, data, false);
  }

  /** As {@link #write(OutputStream, int[], int[])}, but always int32 when {@code int32}: for readers that expect one dtype. */
  public static void write(OutputStream rawOut, int[] shape, int[] data, boolean int32) throws IOException {
    long count = 1;
    for (int d : shape) count *= d;
    if (count != data.length) throw new IllegalArgumentException("shape holds " + count + " values, data has " + data.length);
    boolean narrow = !int32;
    for (int v : narrow ? data : new int[0]) {
      if (v < Short.MIN_VALUE || v > Short.MAX_VALUE) {
        narrow = false;
        break;
      }
    }
    StringBuilder sh = new StringBuilder();
    for (int i = 0; i < shape.length; i++) sh.append(shape[i]).append(shape.length == 1 || i < shape.length - 1 ? ", " : "");
    String dict = "{'descr': '" + (narrow ? "<i2" : "<i4") + "', 'fortran_order': False, 'shape': (" + sh.toString().trim() + "), }";
    // NumPy pads the header with spaces and a newline so that data starts on a 64-byte boundary.
    int total = 10 + dict.length() + 1;
    int pad = (64 - total % 64) % 64;
    String header = dict + " ".repeat(pad) + "\n";
    OutputStream out = new BufferedOutputStream(rawOut, 1 << 16);
    out.write(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0});
    out.write(header.length() & 0xff);
    out.write((header.length() >> 8) & 0xff);
    out.write(header.getBytes(StandardCharsets.ISO_8859_1));
    int item = narrow ? 2 : 4;
    ByteBuffer buf = ByteBuffer.allocate(item * 8192).order(ByteOrder.LITTLE_ENDIAN);
    for (int v : data) {
      if (!buf.hasRemaining()) {
        out.write(buf.array(), 0, buf.position());
        buf.clear();
      }
      if (narrow) buf.putShort((short) v);
      else buf.putInt(v);
    }
    out.write(buf.array(), 0, buf.position());
    out.flush();
  }
}
