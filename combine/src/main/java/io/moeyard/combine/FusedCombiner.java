package io.moeyard.combine;

import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.DispatchOptions;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;

/**
 * Fused combine: the expert rank reads each token's rows where they lie in the expert-major
 * buffer, weights and sums them, and stores one partial per token-rank pair straight into the
 * home rank's partials; home sums its partials in rank order. No sort-back, no unpermute pass,
 * and a token with several experts on one rank sends one row, not several.
 *
 * <p>Home keeps its partials destination-major (the pairs of each expert rank, in token order, as
 * {@link DispatchLayout#destPairs} lists them), so each expert rank writes one sequential run per
 * home with streaming stores: from registers where the host helper sums ({@link NativeRowMath}),
 * else from a small cache-resident stage (see {@link SumBatch}). Measured on the 2-core VM and not kept:
 * reading a group of pairs' rows slot by slot (sequential reads) instead of pair by pair did not
 * move the default bench, so the simpler pair order stays.
 */
public final class FusedCombiner extends Combiner {
  private final int[] pairCount;
  /** One chunk's partials, one per pair: the pair's rows, weighted. */
  private final SumBatch pairSums = new SumBatch(false, scratch);
  /** Every token's sum of its partials at home. */
  private final SumBatch tokenSums = new SumBatch(false, scratch);

  public FusedCombiner(Transport transport) {
    this(transport, DispatchOptions.DEFAULT_CHUNK_PAIRS);
  }

  public FusedCombiner(Transport transport, int chunkPairs) {
    super(transport, chunkPairs);
    this.pairCount = new int[ranks];
  }

  /**
   * Partials peers store into live in {@code memory}, room for {@code maxTokens} tokens of
   * top-{@code topk}: what a communicator builds (and what a process transport needs).
   */
  public FusedCombiner(Transport transport, int chunkPairs, PeerMemory memory, int maxTokens, int topk) {
    super(transport, chunkPairs, java.util.Objects.requireNonNull(memory, "memory"), homeRows(true, transport.size(), maxTokens, topk));
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
    ChunkSchedule.forEachChunk(rank, pairCount, chunk, (r, from, to) -> {
      // source r's pairs here are its destination-ordered pairs to this rank, so their partials
      // form one sequential run at home, streamed there (a plain store would first read every
      // home line it overwrites)
      int base = handle.sourcePairStart(r);
      pairSums.clear();
      for (int q = base + from; q < base + to; q++) {
        for (int i = handle.pairRowStart(q), end = handle.pairRowStart(q + 1); i < end; i++) {
          int row = handle.pairRow(i);
          pairSums.term(row, handle.receivedWeight(row));
        }
        pairSums.endOutput();
      }
      pairSums.run(y, true, homes[r].rows(), homes[r].peerStart()[rank] + from, true);
    });
  }

  @Override
  void reduceAtHome(DispatchHandle handle, RowBuffer partials, RowBuffer out) {
    DispatchLayout layout = handle.layout();
    int[] at = layout.destPosition();
    tokenSums.clear();
    for (int t = 0; t < layout.tokens; t++) {
      for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) tokenSums.term(at[q], 1f);
      tokenSums.endOutput(); // a token routed nowhere: no terms, zeros
    }
    tokenSums.run(partials, false, out, 0, false);
  }
}
