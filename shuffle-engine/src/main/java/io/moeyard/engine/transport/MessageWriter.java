package io.moeyard.engine.transport;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** Builds one message: little-endian fixed-width fields, length-prefixed arrays and strings (-1 = null). */
public final class MessageWriter {
  private final SegmentTable segments;
  private ByteBuffer buf = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN);

  public MessageWriter(SegmentTable segments) {
    this.segments = segments;
  }

  private ByteBuffer room(int bytes) {
    if (buf.remaining() < bytes) {
      ByteBuffer b = ByteBuffer.allocate(Math.max(buf.capacity() * 2, buf.position() + bytes)).order(ByteOrder.LITTLE_ENDIAN);
      buf.flip();
      b.put(buf);
      buf = b;
    }
    return buf;
  }

  public MessageWriter putInt(int v) {
    room(4).putInt(v);
    return this;
  }

  public MessageWriter putLong(long v) {
    room(8).putLong(v);
    return this;
  }

  public MessageWriter putBoolean(boolean v) {
    room(1).put((byte) (v ? 1 : 0));
    return this;
  }

  public MessageWriter putString(String s) {
    if (s == null) return putInt(-1);
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    putInt(b.length);
    room(b.length).put(b);
    return this;
  }

  public MessageWriter putInts(int[] v) {
    if (v == null) return putInt(-1);
    putInt(v.length);
    room(4 * v.length).asIntBuffer().put(v);
    buf.position(buf.position() + 4 * v.length);
    return this;
  }

  public MessageWriter putLongs(long[] v) {
    if (v == null) return putInt(-1);
    putInt(v.length);
    for (long x : v) putLong(x);
    return this;
  }

  public MessageWriter putBytes(byte[] v) {
    if (v == null) return putInt(-1);
    putInt(v.length);
    room(v.length).put(v);
    return this;
  }

  public MessageWriter putDType(DType d) {
    return putInt(d == null ? -1 : d.ordinal());
  }

  /** A segment peers can reach, as its transport describes it; null allowed. */
  public MessageWriter putSegment(MemorySegment s) {
    putBoolean(s != null);
    if (s != null) segments.describe(s, this);
    return this;
  }

  /** A row buffer in memory peers can reach (segment, offset, shape, scales); null allowed. */
  public MessageWriter putRows(RowBuffer b) {
    putBoolean(b != null);
    if (b == null) return this;
    putSegment(b.segment());
    putLong(b.offset());
    putInt(b.rows());
    putInt(b.hidden());
    putDType(b.dtype());
    putSegment(b.scales());
    return this;
  }

  /** The message so far. */
  public byte[] toBytes() {
    return Arrays.copyOf(buf.array(), buf.position());
  }
}
