package io.moeyard.combine;

import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.DispatchOptions;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Transport;

/**
 * Fused combine: the expert rank reads each token's rows where they lie in the expert-major
 * buffer, weights and sums them, and stores one partial per token-rank pair straight into the
 * home rank's partials; home sums its partials in rank order. No sort-back, no unpermute pass,
 * and a token with several experts on one rank sends one row, not several.
 *
 * <p>Home keeps its partials destination-major (the pairs of each expert rank, in token order, as
 * {@link DispatchLayout#destPairs} lists them), so each expert rank writes one sequential run per
 * home: straight from registers with streaming stores where the host helper sums ({@link
 * NativeRowMath}), else streamed from a small cache-resident stage. Measured on the 2-core VM and not kept:
 * reading a group of pairs' rows slot by slot (sequential reads) instead of pair by pair did not
 * move the default bench, so the simpler pair order stays.
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
  HomeWindow homeWindow(DispatchHandle handle, int hidden, DType dtype) {
    DispatchLayout layout = handle.layout();
    return new HomeWindow(scratchRows(layout.pairs(), hidden, dtype), layout.destPairStart);
  }

  @Override
  void send(DispatchHandle handle, RowBuffer y, HomeWindow[] homes) {
    for (int r = 0; r < ranks; r++) pairCount[r] = handle.sourcePairStart(r + 1) - handle.sourcePairStart(r);
    float[] weights = handle.receivedWeights();
    RowBuffer first = homes[rank].rows();
    // with the host helper each partial streams from registers straight into its home run;
    // without it, a few rows are computed into a cache-resident stage and then streamed there
    // (a plain store would first read every home line it overwrites)
    boolean direct = RowMath.streams(y, first);
    RowBuffer stage = direct ? null : staging(y.hidden(), first.dtype());
    ChunkSchedule.forEachChunk(rank, pairCount, chunk, (r, from, to) -> {
      RowBuffer home = homes[r].rows();
      // source r's pairs here are its destination-ordered pairs to this rank, so their partials
      // form one sequential run at home
      int at = homes[r].peerStart()[rank] + from;
      int base = handle.sourcePairStart(r);
      int staged = 0;
      for (int q = base + from; q < base + to; q++) {
        int firstRow = handle.pairRowStart(q);
        int n = handle.pairRowStart(q + 1) - firstRow;
        ensureTerms(n);
        for (int i = 0; i < n; i++) {
          int row = handle.pairRow(firstRow + i);
          termRows[i] = row;
          termWeights[i] = weights[row];
        }
        // the pair's whole sum in one pass over its rows
        if (direct) {
          RowMath.sumStore(acc, termOffsets, y, termRows, termWeights, n, home, at++, true);
          continue;
        }
        RowMath.sumStore(acc, termOffsets, y, termRows, termWeights, n, stage, staged++);
        if (staged == STAGE_ROWS || q == base + to - 1) {
          RowCopy.copy(stage.segment(), stage.rowOffset(0), home.segment(), home.rowOffset(at), staged * stage.rowBytes());
          at += staged;
          staged = 0;
        }
      }
    });
    if (direct) RowCopy.storeFence(); // the barrier that follows must find every partial in place
  }

  @Override
  void reduceAtHome(DispatchHandle handle, RowBuffer partials, RowBuffer out) {
    DispatchLayout layout = handle.layout();
    int[] at = layout.destPosition();
    for (int t = 0; t < layout.tokens; t++) {
      int q = layout.pairOffset[t];
      int n = layout.pairOffset[t + 1] - q;
      if (n == 0) {
        RowMath.zero(out, t);
        continue;
      }
      ensureTerms(n);
      for (int i = 0; i < n; i++) termRows[i] = at[q + i];
      RowMath.sumStore(acc, termOffsets, partials, termRows, null, n, out, t);
    }
  }

  /** Partials computed before each streamed copy home: 8 rows of 4 KiB stay in L1/L2. */
  private static final int STAGE_ROWS = 8;

  private RowBuffer stage;

  private RowBuffer staging(int hidden, DType dtype) {
    if (stage == null || stage.hidden() != hidden || stage.dtype() != dtype) {
      stage = RowBuffer.allocate(scratch, STAGE_ROWS, hidden, dtype);
    }
    return stage;
  }
}
