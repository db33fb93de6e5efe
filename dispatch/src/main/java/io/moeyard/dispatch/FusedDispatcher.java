package io.moeyard.dispatch;

import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.MemorySegment;

/**
 * FUSCO-style fused dispatch: each token row is stored straight from {@code x} into its final
 * expert-major row(s) in the destination's receive buffer, once per local slot that needs it; no
 * permute pass before, no sort pass after. Rows go out in chunks, round-robin over rotated peers.
 *
 * <p>On the CPU the stores are issued in destination order (slot by slot, tokens in order), so
 * each sender writes long sequential runs instead of scattering one row into each of a token's
 * slots: the same stores run faster in destination order ({@code CopyKernelsBenchmark}; figures in
 * bench/results/cpu-2026-11-26.md), because a CPU pays for scattered stores (read-for-ownership, TLB) and not
 * for re-reading a source row that is still in its cache. The GPU kernels, whose cost is the
 * other way round, read each row once and store it everywhere. The stores themselves go through
 * {@link RowCopy}, which streams them past the cache where the host helper is available.
 */
public final class FusedDispatcher extends Dispatcher {
  private long[] srcOff = new long[0];
  private long[] dstOff = new long[0];

  public FusedDispatcher(Transport transport, ExpertMap map) {
    this(transport, map, DispatchOptions.defaults());
  }

  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options) {
    super(transport, map, options);
  }

  /**
   * A dispatcher whose window metadata live in {@code memory}, sized for {@code capacityRows}
   * received rows: what a communicator builds (and what a process transport needs).
   */
  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options, PeerMemory memory, int capacityRows) {
    super(transport, map, options, java.util.Objects.requireNonNull(memory, "memory"), capacityRows);
  }

  @Override
  RowBuffer staging(int receivedRows, int hidden, DType dtype) {
    return null;
  }

  @Override
  void move(RowBuffer x, Routing routing, DispatchLayout layout, SendPlan plan, ReceiveWindow[] windows) {
    // pair descriptors first, then rows with their metadata, each destination's in receive order
    sendAllPairs(false, routing, layout, plan, windows);
    int[] slotStart = layout.slotPermutedStart();
    int[] permSel = layout.permutedSelection();
    int[] sortedSlot = layout.sortedSlot;
    int topk = layout.topk;
    int[] sortedK = layout.sortedK;
    float[] weights = routing.topkWeights();
    long rowBytes = x.rowBytes();
    int scalesPerRow = x.scalesPerRow();
    long scaleBytes = (long) scalesPerRow * Float.BYTES;
    int chunk = options.chunkPairs();
    if (srcOff.length < chunk) {
      srcOff = new long[chunk];
      dstOff = new long[chunk];
    }
    ChunkSchedule.forEachChunk(rank, layout.selectionsTo, chunk, (d, from, to) -> {
      ReceiveWindow w = windows[d];
      RowBuffer dst = w.rows;
      int base = slotStart[d * slotsPerRank];
      int n = 0;
      for (int i = base + from, end = base + to; i < end; i++) {
        int sel = permSel[i];
        int t = sel / topk;
        int slot = sortedSlot[sel];
        int pos = plan.slotStart[slot] + (i - slotStart[slot]);
        w.weights.setAtIndex(ReceiveWindow.FLOAT, pos, weights[sel - sel % topk + sortedK[sel]]);
        w.rowSrcRank.setAtIndex(ReceiveWindow.INT, pos, rank);
        w.rowSrcToken.setAtIndex(ReceiveWindow.INT, pos, t);
        srcOff[n] = x.rowOffset(t);
        dstOff[n++] = dst.rowOffset(pos);
        if (scalesPerRow > 0) {
          MemorySegment.copy(x.scales(), t * scaleBytes, dst.scales(), pos * scaleBytes, scaleBytes);
        }
      }
      RowCopy.copyRows(x.segment(), srcOff, dst.segment(), dstOff, n, rowBytes);
    });
  }

  @Override
  void finish(ReceiveWindow window, int[][] counts, int[] slotOffsets) {}
}
