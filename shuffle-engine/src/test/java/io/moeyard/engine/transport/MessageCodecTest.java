package io.moeyard.engine.transport;

import io.moeyard.engine.testkit.TestSeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The process wire format: what a writer puts, a reader gets back, segments by descriptor. */
class MessageCodecTest {
  /** Descriptors are offsets into one base segment, resolved against a second view of it. */
  private record OffsetTable(MemorySegment base) implements SegmentTable {
    @Override
    public void describe(MemorySegment s, MessageWriter out) {
      out.putLong(s.address() - base.address()).putLong(s.byteSize());
    }

    @Override
    public MemorySegment resolve(MessageReader in) {
      return base.asSlice(in.getLong(), in.getLong());
    }
  }

  @Test
  void everyFieldRoundTrips() {
    long seed = TestSeed.fresh().value();
    SplittableRandom rnd = new SplittableRandom(seed);
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment base = arena.allocate(1 << 16, 64);
      OffsetTable table = new OffsetTable(base);
      for (int round = 0; round < 50; round++) {
        int[] ints = rnd.ints(rnd.nextInt(2000)).toArray(); // past the writer's first buffer
        long[] longs = rnd.longs(rnd.nextInt(20)).toArray();
        byte[] bytes = new byte[rnd.nextInt(100)];
        rnd.nextBytes(bytes);
        String text = "rank " + rnd.nextInt() + " naïve ✓";
        DType dtype = DType.values()[rnd.nextInt(DType.values().length)];
        int hidden = 128 * (1 + rnd.nextInt(2));
        MemorySegment rows = base.asSlice(64 * rnd.nextInt(16), 4L * hidden * 8);
        MemorySegment scales = dtype.hasScales() ? base.asSlice(32768, 64) : null;
        RowBuffer rb = new RowBuffer(rows, 0, 2, hidden, dtype, scales);
        MessageWriter w = new MessageWriter(table);
        w.putInt(-7).putLong(Long.MIN_VALUE).putBoolean(true).putString(text).putString(null).putInts(ints).putInts(null)
            .putLongs(longs).putBytes(bytes).putDType(dtype).putDType(null).putSegment(null).putRows(rb).putRows(null);
        MessageReader r = new MessageReader(table, w.toBytes(), 3);
        String m = "seed " + seed + " round " + round;
        assertEquals(-7, r.getInt(), m);
        assertEquals(Long.MIN_VALUE, r.getLong(), m);
        assertEquals(true, r.getBoolean(), m);
        assertEquals(text, r.getString(), m);
        assertNull(r.getString(), m);
        assertArrayEquals(ints, r.getInts(), m);
        assertNull(r.getInts(), m);
        assertArrayEquals(longs, r.getLongs(), m);
        assertArrayEquals(bytes, r.getBytes(), m);
        assertEquals(dtype, r.getDType(), m);
        assertNull(r.getDType(), m);
        assertNull(r.getSegment(), m);
        RowBuffer back = r.getRows();
        assertEquals(rb.segment().address(), back.segment().address(), m);
        assertEquals(rb.segment().byteSize(), back.segment().byteSize(), m);
        assertEquals(rb.rows(), back.rows(), m);
        assertEquals(rb.hidden(), back.hidden(), m);
        assertEquals(rb.dtype(), back.dtype(), m);
        assertEquals(scales == null, back.scales() == null, m);
        assertNull(r.getRows(), m);
        assertEquals(3, r.from(), m);
      }
    }
  }
}
