package io.moeyard.engine.transport;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/** Reads one message that a {@link MessageWriter} built, in the same order. */
public final class MessageReader {
  private final SegmentTable segments;
  private final ByteBuffer buf;
  private final int from;

  /** {@code from}: the rank that wrote the message (whose segments its descriptors name). */
  public MessageReader(SegmentTable segments, byte[] bytes, int from) {
    this.segments = segments;
    this.buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    this.from = from;
  }

  /** The rank that wrote this message. */
  public int from() {
    return from;
  }

  public int getInt() {
    return buf.getInt();
  }

  public long getLong() {
    return buf.getLong();
  }

  public boolean getBoolean() {
    return buf.get() != 0;
  }

  public String getString() {
    int n = buf.getInt();
    if (n < 0) return null;
    byte[] b = new byte[n];
    buf.get(b);
    return new String(b, StandardCharsets.UTF_8);
  }

  public int[] getInts() {
    int n = buf.getInt();
    if (n < 0) return null;
    int[] v = new int[n];
    buf.asIntBuffer().get(v);
    buf.position(buf.position() + 4 * n);
    return v;
  }

  public long[] getLongs() {
    int n = buf.getInt();
    if (n < 0) return null;
    long[] v = new long[n];
    for (int i = 0; i < n; i++) v[i] = buf.getLong();
    return v;
  }

  public byte[] getBytes() {
    int n = buf.getInt();
    if (n < 0) return null;
    byte[] b = new byte[n];
    buf.get(b);
    return b;
  }

  public DType getDType() {
    int o = buf.getInt();
    return o < 0 ? null : DType.values()[o];
  }

  public MemorySegment getSegment() {
    return getBoolean() ? segments.resolve(this) : null;
  }

  /**
   * The rows the sender described, in this process's view; null when it sent none, and also when
   * they lie in memory this rank does not reach (a rank of another machine: its segments resolve to
   * {@link MemorySegment#NULL}), so that a window of such a rank decodes but cannot be used.
   */
  public RowBuffer getRows() {
    if (!getBoolean()) return null;
    MemorySegment seg = getSegment();
    long offset = getLong();
    int rows = getInt();
    int hidden = getInt();
    DType dtype = getDType();
    MemorySegment scales = getSegment();
    if (MemorySegment.NULL.equals(seg) && rows > 0) return null;
    return new RowBuffer(seg, offset, rows, hidden, dtype, scales);
  }
}
