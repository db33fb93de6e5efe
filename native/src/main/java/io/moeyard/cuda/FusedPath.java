package io.moeyard.cuda;

/**
 * The fused data path: dispatch reads each token row once and stores it straight into its final
 * rows on every destination, with the weights and one pair record per token-rank pair; combine
 * reduces each pair on the expert rank into the home rank's partials, then sums them at home.
 * Enqueues only: the caller waits.
 */
final class FusedPath {
  private FusedPath() {}

  /** The data phase of a dispatch, after {@link LayoutPhase#run}: timed from every rank's offsets. */
  static void dispatch(VirtualRanks w, Clock clock, int kernels) {
    KernelShape shape = w.shape;
    int nR = w.nR;
    int sc = shape.scaleCols();
    int rb = shape.rowBytes();
    // Every rank's offsets are known once the clock starts: all streams start the data phase there.
    clock.start(w.evStage);
    for (int r = 0; r < nR; r++) {
      RankBuffers b = w.buf[r];
      NativeKernels.dispatchFused(b.x, b.scales, sc, b.topkW, b.slotIds, b.pos, b.pairPos,
          b.pairIdx, w.counts[r].tokens, w.nK, w.nS, nR, r, rb, w.recvXOf, w.recvScalesOf,
          w.recvWOf, w.rowBaseOf, w.pairBaseOf, w.pairSrcOf, w.pairHomeOf, w.pairTokenOf,
          w.pairRowsOf, w.streams[r], kernels);
      NativeKernels.eventRecord(w.evSend[r], w.streams[r]);
    }
    for (int d = 0; d < nR; d++) {
      for (int r = 0; r < nR; r++) {
        NativeKernels.streamWaitEvent(w.streams[d], w.evSend[r]);
      }
      NativeKernels.eventRecord(w.evDone[d], w.streams[d]);
    }
    clock.stop();
  }

  /** A combine after a fused dispatch (it reads the pair records), the expert outputs uploaded. */
  static void combine(VirtualRanks w, Clock clock, int kernels) {
    int nR = w.nR;
    int dt = w.shape.combineCode();
    clock.start(null);
    for (int d = 0; d < nR; d++) {
      RankBuffers b = w.buf[d];
      NativeKernels.combineFused(dt, b.y, b.recvW, b.pairSrc, b.pairHome, b.pairRows,
          w.counts[d].pairs, w.nK, w.nH, w.partialsOf, w.streams[d], kernels);
      NativeKernels.eventRecord(w.evSend[d], w.streams[d]);
    }
    for (int r = 0; r < nR; r++) {
      RankBuffers b = w.buf[r];
      for (int d = 0; d < nR; d++) {
        NativeKernels.streamWaitEvent(w.streams[r], w.evSend[d]);
      }
      NativeKernels.combineHome(dt, b.partials, b.pairOffset, w.counts[r].tokens, w.nH, b.out,
          w.streams[r], kernels);
      NativeKernels.eventRecord(w.evDone[r], w.streams[r]);
    }
    clock.stop();
  }
}
