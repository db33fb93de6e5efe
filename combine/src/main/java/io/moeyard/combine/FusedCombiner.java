package io.moeyard.combine;

import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.DispatchOptions;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Transport;

/**
 * Fused combine: the expert rank reads each token's rows where they lie in the expert-major
 * buffer, weights and sums them, and stores one partial per token-rank pair straight into the
 * home rank's partials; home sums its partials in rank order. No sort-back, no unpermute pass,
 * and a token with several experts on one rank sends one row, not several.
 */
public final class FusedCombiner extends Combiner {
  private final int[] pairCount;

  public FusedCombiner(Transport transport) {
    this(transport, DispatchOptions.DEFAULT_CHUNK_PAIRS);
  }

  public FusedCombiner(Transport transport, int chunkPairs) {
    super(transport, chunkPairs);
    this.pairCount = new int[ranks];
  }

  @Override
  RowBuffer homeBuffer(DispatchHandle handle, int hidden, DType dtype) {
    return scratchRows(handle.layout().pairs(), hidden, dtype);
  }

  @Override
  void send(DispatchHandle handle, RowBuffer y, RowBuffer[] homes) {
    for (int r = 0; r < ranks; r++) pairCount[r] = handle.sourcePairStart(r + 1) - handle.sourcePairStart(r);
    float[] weights = handle.receivedWeights();
    ChunkSchedule.forEachChunk(rank, pairCount, chunk, (r, from, to) -> {
      RowBuffer home = homes[r];
      int base = handle.sourcePairStart(r);
      for (int q = base + from; q < base + to; q++) {
        int i = handle.pairRowStart(q);
        int end = handle.pairRowStart(q + 1);
        int first = handle.pairRow(i);
        RowMath.setWeighted(acc, y, first, weights[first]);
        for (i++; i < end; i++) {
          int row = handle.pairRow(i);
          RowMath.addWeighted(acc, y, row, weights[row]);
        }
        RowMath.store(acc, home, handle.pairHomeIndex(q));
      }
    });
  }

  @Override
  void reduceAtHome(DispatchHandle handle, RowBuffer partials, RowBuffer out) {
    DispatchLayout layout = handle.layout();
    for (int t = 0; t < layout.tokens; t++) {
      int first = layout.pairOffset[t];
      int last = layout.pairOffset[t + 1];
      if (first == last) {
        RowMath.zero(out, t);
        continue;
      }
      RowMath.set(acc, partials, first);
      for (int q = first + 1; q < last; q++) RowMath.add(acc, partials, q);
      RowMath.store(acc, out, t);
    }
  }
}
