package io.moeyard.dispatch.internal;

import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * What a receiving rank publishes for one dispatch: where senders store rows and the metadata of
 * each row. Senders write disjoint ranges (computed from the announced counts), so no two ranks
 * ever write the same element and no locking is needed; the closing barrier publishes it all.
 *
 * <p>The metadata are segments, not Java arrays, so that they can live in memory that peers in
 * other processes reach ({@link PeerMemory}); between processes a window travels as descriptors
 * ({@link #CODEC}) that every peer resolves to its own mapping.
 */
final class ReceiveWindow {
  static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
  static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;

  final RowBuffer rows;
  /** The unfused path's all-to-all target (source-rank-major), or null on the fused path. */
  final RowBuffer staging;
  /** Per received row: float weight; int source rank, source token; the rows of each pair. */
  final MemorySegment weights;
  final MemorySegment rowSrcRank;
  final MemorySegment rowSrcToken;
  final MemorySegment pairRows;
  /** Per received pair: source rank, index among its home's pairs; pairRowStart has one more. */
  final MemorySegment pairSrcRank;
  final MemorySegment pairHomeIndex;
  final MemorySegment pairRowStart;

  ReceiveWindow(RowBuffer rows, RowBuffer staging, Metadata meta, int receivedRows, int receivedPairs) {
    this(rows, staging,
        meta.weights.asSlice(0, 4L * receivedRows), meta.rowSrcRank.asSlice(0, 4L * receivedRows),
        meta.rowSrcToken.asSlice(0, 4L * receivedRows), meta.pairRows.asSlice(0, 4L * receivedRows),
        meta.pairSrcRank.asSlice(0, 4L * receivedPairs), meta.pairHomeIndex.asSlice(0, 4L * receivedPairs),
        meta.pairRowStart.asSlice(0, 4L * (receivedPairs + 1)));
    pairRowStart.setAtIndex(INT, receivedPairs, receivedRows);
  }

  private ReceiveWindow(
      RowBuffer rows, RowBuffer staging, MemorySegment weights, MemorySegment rowSrcRank, MemorySegment rowSrcToken,
      MemorySegment pairRows, MemorySegment pairSrcRank, MemorySegment pairHomeIndex, MemorySegment pairRowStart) {
    this.rows = rows;
    this.staging = staging;
    this.weights = weights;
    this.rowSrcRank = rowSrcRank;
    this.rowSrcToken = rowSrcToken;
    this.pairRows = pairRows;
    this.pairSrcRank = pairSrcRank;
    this.pairHomeIndex = pairHomeIndex;
    this.pairRowStart = pairRowStart;
  }

  /**
   * Room for the metadata of up to {@code rows} received rows (a pair has at least one row, so as
   * many pairs), carved once from peer memory (or per dispatch from a GC-owned arena when the
   * dispatcher was built without one).
   */
  static final class Metadata {
    final int capacityRows;
    final MemorySegment weights;
    final MemorySegment rowSrcRank;
    final MemorySegment rowSrcToken;
    final MemorySegment pairRows;
    final MemorySegment pairSrcRank;
    final MemorySegment pairHomeIndex;
    final MemorySegment pairRowStart;

    private Metadata(int rows, java.util.function.LongFunction<MemorySegment> alloc) {
      this.capacityRows = rows;
      long b = 4L * rows;
      weights = alloc.apply(b);
      rowSrcRank = alloc.apply(b);
      rowSrcToken = alloc.apply(b);
      pairRows = alloc.apply(b);
      pairSrcRank = alloc.apply(b);
      pairHomeIndex = alloc.apply(b);
      pairRowStart = alloc.apply(b + 4);
    }

    static Metadata in(PeerMemory memory, int rows) {
      return new Metadata(rows, b -> memory.allocate(b, 64));
    }

    /** Per-dispatch metadata the garbage collector frees with its handle (ranks of one JVM). */
    static Metadata collected(int rows) {
      Arena auto = Arena.ofAuto();
      return new Metadata(rows, b -> auto.allocate(Math.max(1, b), 64));
    }

    /** Bytes {@link #in} carves for {@code rows} rows, alignment included. */
    static long bytes(long rows) {
      return 7 * (4 * rows + 64) + 4;
    }
  }

  /** Between processes: the rows' and metadata's descriptors. */
  static final MessageCodec<ReceiveWindow> CODEC = new MessageCodec<>() {
    @Override
    public void write(ReceiveWindow w, MessageWriter out) {
      out.putRows(w.rows).putRows(w.staging);
      for (MemorySegment s : new MemorySegment[] {w.weights, w.rowSrcRank, w.rowSrcToken, w.pairRows, w.pairSrcRank,
          w.pairHomeIndex, w.pairRowStart}) {
        out.putSegment(s);
      }
    }

    @Override
    public ReceiveWindow read(MessageReader in) {
      return new ReceiveWindow(in.getRows(), in.getRows(), in.getSegment(), in.getSegment(), in.getSegment(),
          in.getSegment(), in.getSegment(), in.getSegment(), in.getSegment());
    }
  };
}
