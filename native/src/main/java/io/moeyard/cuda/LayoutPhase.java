package io.moeyard.cuda;

/**
 * The layout of a dispatch (DeepEP's get_dispatch_layout): on every source rank, each selection's
 * slot and position, the token-rank pairs and the counts; the counts go to the host once (the one
 * host sync of a dispatch: receive sizes and the unfused path's copy ranges come from them), are
 * checked against the receive buffers, and every destination computes its receive offsets.
 */
final class LayoutPhase {
  private LayoutPhase() {}

  /**
   * Enqueues the layout of every rank, reads the counts back and records each destination's
   * {@code evStage} once its offsets are on the device. Throws naming the need and the capacity,
   * before any receive buffer is written, when a destination would receive more than it holds.
   */
  static void run(VirtualRanks w) {
    KernelShape shape = w.shape;
    int nR = w.nR;
    int nS = w.nS;
    int nP = w.nP;
    int nK = w.nK;
    // 1. layout on every source rank
    for (int r = 0; r < nR; r++) {
      RankBuffers b = w.buf[r];
      int t = w.counts[r].tokens;
      long st = w.streams[r];
      NativeKernels.mapSlots(b.topkIdx, t, nK, w.mapOffsets, w.mapSlots, shape.experts(), nS,
          shape.localRanks(), r, b.slotIds, st);
      NativeKernels.layoutCount(b.slotIds, t, nK, nS, nP, nR, b.chunkCounts, st);
      NativeKernels.layoutScan(b.chunkCounts, t, nP, nR, b.chunkBase, b.totals, b.slotPrefix,
          b.chunkPairBase, b.pairOffset, st);
      NativeKernels.layoutPositions(b.slotIds, t, nK, nS, nP, nR, b.chunkBase, b.chunkPairBase,
          b.pos, b.pairPos, b.pairIdx, b.inRank, b.pairOffset, st);
    }
    // 2. counts to the host
    for (int r = 0; r < nR; r++) {
      RankBuffers b = w.buf[r];
      RankCounts c = w.counts[r];
      NativeKernels.streamSynchronize(w.streams[r]);
      c.totals = new int[nP + nR];
      c.slotPrefix = new int[nP + 1];
      NativeKernels.intsFromDevice(b.totals, c.totals, 0, nP + nR);
      NativeKernels.intsFromDevice(b.slotPrefix, c.slotPrefix, 0, nP + 1);
    }
    // 3. what every destination receives, checked on all of them before any is written
    int[] rows = new int[nR];
    int[] pairs = new int[nR];
    int[][] stagingPrefix = new int[nR][];
    for (int d = 0; d < nR; d++) {
      int n = 0;
      int[] prefix = new int[nR * nS + 1];
      for (int r = 0; r < nR; r++) {
        for (int ls = 0; ls < nS; ls++) {
          prefix[r * nS + ls] = n;
          n += w.counts[r].totals[d * nS + ls];
        }
        pairs[d] += w.counts[r].totals[nP + d];
      }
      prefix[nR * nS] = n;
      rows[d] = n;
      stagingPrefix[d] = prefix;
      w.buf[d].checkReceive(d, rows[d], pairs[d]);
    }
    for (int d = 0; d < nR; d++) {
      RankCounts c = w.counts[d];
      c.rows = rows[d];
      c.pairs = pairs[d];
      c.stagingPrefix = stagingPrefix[d];
    }
    // 4. receive offsets on every destination
    for (int d = 0; d < nR; d++) {
      RankBuffers b = w.buf[d];
      NativeKernels.recvOffsets(w.totalsOf, d, nR, nS, nP, b.recvCounts, b.slotTotal, b.rowBase,
          b.slotBase, b.pairBase, b.stagingPrefix, w.streams[d]);
      NativeKernels.eventRecord(w.evStage[d], w.streams[d]);
    }
  }
}
