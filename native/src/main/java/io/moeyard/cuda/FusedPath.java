package io.moeyard.cuda;

/**
 * The fused data path, one rank's part: dispatch reads each token row once and stores it straight
 * into its final rows on every destination (through this rank's table of receive rows), with the
 * weights and one pair record per token-rank pair; combine reduces each pair on the expert rank
 * into the home rank's partials, then sums them at home. Enqueues only, on the rank's stream; the
 * caller orders the phases across ranks with events.
 */
final class FusedPath {
  private FusedPath() {}

  /** Rank r's dispatch kernel: its tokens {@code x} into every destination (offsets known). */
  static void dispatch(VirtualRanks w, int r, DeviceRows x, int tokens, int kernels) {
    KernelShape shape = w.shape;
    RankBuffers b = w.buf[r];
    NativeKernels.dispatchFused(x.address(), x.scalesAddress(), shape.scaleCols(), b.topkW, b.slotIds, b.pos,
        b.pairPos, b.pairIdx, tokens, w.nK, w.nS, w.nR, r, shape.rowBytes(), w.recvXTable[r],
        w.recvScalesTable[r], w.recvWOf, w.rowBaseOf, w.pairBaseOf, w.pairSrcOf, w.pairHomeOf,
        w.pairTokenOf, w.pairRowsOf, w.streams[r], kernels);
  }

  /** Expert rank d: the weighted sum of each received pair's rows of {@code y} into its home's partials. */
  static void combineSend(VirtualRanks w, int d, DeviceRows y, int pairs, int kernels) {
    RankBuffers b = w.buf[d];
    NativeKernels.combineFused(w.shape.combineCode(), y.address(), b.recvW, b.pairSrc, b.pairHome, b.pairRows,
        pairs, w.nK, w.nH, w.partialsOf, w.streams[d], kernels);
  }

  /**
   * Home rank r, every expert rank's partials in: each token's partials summed into {@code out}, by
   * node first on more than one node (the runs follow from r's slot ids of this dispatch).
   */
  static void combineHome(VirtualRanks w, int r, int tokens, DeviceRows out, int kernels) {
    RankBuffers b = w.buf[r];
    NativeKernels.combineHome(w.shape.combineCode(), b.partials, b.pairOffset, b.slotIds, tokens, w.nK, w.nS, w.nR,
        w.shape.localRanks(), w.nH, out.address(), w.streams[r], kernels);
  }
}
