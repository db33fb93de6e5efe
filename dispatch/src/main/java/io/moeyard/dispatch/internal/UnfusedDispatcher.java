package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The unfused baseline, what engines run today (Megatron-Core's alltoall token dispatcher):
 * (1) permute: copy one row per selection into a buffer ordered by destination rank, local slot,
 * token (no dedup); (2) all-to-all-v: copy each destination's contiguous block into its staging
 * buffer, source-rank-major; (3) sort chunks: each receiver reorders its [source][slot] blocks
 * into the expert-major layout. Same final bytes as {@link FusedDispatcher}, three copies
 * instead of one, and every selection crosses (no dedup): the figure fusion is measured against.
 */
public final class UnfusedDispatcher extends Dispatcher {
  private final Arena scratch = Arena.ofShared();
  private RowBuffer permuted;
  private RowBuffer stagingBuffer;
  private final int[] chunkRows;

  public UnfusedDispatcher(Transport transport, ExpertMap map) {
    this(transport, map, DispatchOptions.defaults());
  }

  public UnfusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options) {
    super(transport, map, options);
    this.chunkRows = new int[ranks];
  }

  /** Window metadata and staging rows in {@code memory}, sized for {@code capacityRows} received rows. */
  public UnfusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options, PeerMemory memory, int capacityRows) {
    super(transport, map, options, java.util.Objects.requireNonNull(memory, "memory"), capacityRows);
    this.chunkRows = new int[ranks];
    Machines.require(transport, "the unfused dispatch", true);
  }

  @Override
  void freeScratch() {
    scratch.close();
  }

  @Override
  RowBuffer staging(int receivedRows, int hidden, DType dtype) {
    if (memory == null) {
      stagingBuffer = grow(stagingBuffer, receivedRows, hidden, dtype);
    } else if (stagingBuffer == null || stagingBuffer.hidden() != hidden || stagingBuffer.dtype() != dtype
        || stagingBuffer.rows() < receivedRows) {
      // peers store into it: carved once, at the capacity the peer memory was sized for
      stagingBuffer = memory.rows(Math.max(receivedRows, capacityRows), hidden, dtype);
    }
    return stagingBuffer;
  }

  private RowBuffer grow(RowBuffer b, int rows, int hidden, DType dtype) {
    if (b != null && b.hidden() == hidden && b.dtype() == dtype && b.rows() >= rows) return b;
    // Scratch only grows: the old buffer stays in the arena until the dispatcher is dropped,
    // because a peer may still hold its address from an earlier call's window.
    return RowBuffer.allocate(scratch, Math.max(rows, b == null ? 0 : b.rows()), hidden, dtype);
  }

  @Override
  void move(RowBuffer x, Routing routing, DispatchLayout layout, Announcement[] all, int[][] counts,
      ReceiveWindow[] windows) {
    // metadata to every destination (the same descriptors the fused path writes)
    SendPlan plan = new SendPlan(rank, all, counts);
    sendAllPairs(true, routing, layout, plan, windows, layout.pairsTo);

    // (1) permute
    int selections = layout.selections();
    permuted = grow(permuted, selections, x.hidden(), x.dtype());
    int[] perm = layout.permutedPosition();
    long rowBytes = x.rowBytes();
    int spr = x.scalesPerRow();
    for (int t = 0; t < layout.tokens; t++) {
      for (int i = t * layout.topk, end = i + layout.topk; i < end && perm[i] >= 0; i++) {
        copyRows(x, t, permuted, perm[i], 1, rowBytes, spr);
      }
    }
    // (2) all-to-all-v: destination d's block is contiguous in the permuted buffer
    int[] blockStart = new int[ranks + 1];
    for (int d = 0; d < ranks; d++) blockStart[d + 1] = blockStart[d] + layout.selectionsTo[d];
    int chunk = options.chunkPairs();
    ChunkSchedule.forEachChunk(rank, layout.selectionsTo, chunk, (d, from, to) ->
        copyRows(permuted, blockStart[d] + from, windows[d].staging, plan.rowBase[d] + from, to - from, rowBytes, spr));
  }

  @Override
  void finish(ReceiveWindow window, int[][] counts, int[] slotOffsets) {
    // (3) sort chunks: staging is [source][local slot][token]; the layout wants [slot][source][token]
    RowBuffer staging = window.staging;
    RowBuffer rows = window.rows;
    long rowBytes = rows.rowBytes();
    int spr = rows.scalesPerRow();
    int self0 = rank * slotsPerRank;
    int src = 0;
    int[] fill = new int[slotsPerRank];
    for (int r = 0; r < ranks; r++) {
      for (int e = 0; e < slotsPerRank; e++) {
        int n = counts[r][self0 + e];
        if (n > 0) copyRows(staging, src, rows, slotOffsets[e] + fill[e], n, rowBytes, spr);
        fill[e] += n;
        src += n;
      }
    }
  }

  private static void copyRows(RowBuffer from, int fromRow, RowBuffer to, int toRow, int n, long rowBytes, int scalesPerRow) {
    RowCopy.copy(from.segment(), from.rowOffset(fromRow), to.segment(), to.rowOffset(toRow), n * rowBytes);
    if (scalesPerRow > 0) {
      long sb = (long) scalesPerRow * Float.BYTES;
      MemorySegment.copy(from.scales(), fromRow * sb, to.scales(), toRow * sb, n * sb);
    }
  }
}
