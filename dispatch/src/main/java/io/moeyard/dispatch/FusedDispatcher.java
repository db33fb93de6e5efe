package io.moeyard.dispatch;

import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Transport;

/**
 * FUSCO-style fused dispatch: each token row is read once from {@code x} and stored straight
 * into its final expert-major row(s) in the destination's receive buffer, once per local slot
 * that needs it; no permute pass before, no sort pass after. Pairs go out in chunks, round-robin
 * over rotated peers.
 */
public final class FusedDispatcher extends Dispatcher {
  private int[] nextPos = new int[0];
  private final int[] rowCursor;

  public FusedDispatcher(Transport transport, ExpertMap map) {
    this(transport, map, DispatchOptions.defaults());
  }

  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options) {
    super(transport, map, options);
    this.rowCursor = new int[ranks];
  }

  @Override
  RowBuffer staging(int receivedRows, int hidden, DType dtype) {
    return null;
  }

  @Override
  void move(RowBuffer x, Routing routing, DispatchLayout layout, SendPlan plan, ReceiveWindow[] windows) {
    if (nextPos.length != plan.slotStart.length) nextPos = new int[plan.slotStart.length];
    System.arraycopy(plan.slotStart, 0, nextPos, 0, nextPos.length);
    java.util.Arrays.fill(rowCursor, 0);
    ChunkSchedule.forEachChunk(rank, layout.pairsTo, options.chunkPairs(),
        (d, from, to) -> sendPairs(d, from, to, x, routing, layout, plan, windows[d], nextPos, rowCursor));
  }

  @Override
  void finish(ReceiveWindow window, int[][] counts, int[] slotOffsets) {}
}
