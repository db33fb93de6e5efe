package io.moeyard.cuda;

/**
 * The layout of a dispatch on one source rank (DeepEP's get_dispatch_layout): the routing's check,
 * each selection's slot and position, the token-rank pairs and the counts; the counts go to the
 * host once (the one host sync of a dispatch: receive sizes and the unfused path's copy ranges
 * come from them), and once every rank's are known each destination computes its receive offsets.
 */
final class LayoutPhase {
  private LayoutPhase() {}

  /**
   * Enqueues rank r's routing check and layout on its stream, waits for them and returns its counts:
   * selections per slot and token-rank pairs per destination ({@code P + R} ints), then the routing
   * check's first bad flat index ({@code -1}: none).
   */
  static int[] run(VirtualRanks w, int r, int tokens) {
    return run(w, r, tokens, null);
  }

  /**
   * As {@link #run(VirtualRanks, int, int)}; with {@code relay} (the node-level path) also the
   * tokens' rows in each node's message and tokens per node, read back in the same wait and
   * appended ({@code nodes} more ints).
   */
  static int[] run(VirtualRanks w, int r, int tokens, RelayBuffers relay) {
    KernelShape shape = w.shape;
    int nS = w.nS;
    int nP = w.nP;
    int nK = w.nK;
    int nR = w.nR;
    int nb = nP + nR;
    RankBuffers b = w.buf[r];
    long st = w.streams[r];
    NativeKernels.checkRouting(b.topkIdx, b.topkW, tokens, nK, shape.experts(), b.totals + 4L * nb, st);
    NativeKernels.mapSlots(b.topkIdx, tokens, nK, w.mapOffsets, w.mapSlots, shape.experts(), nS,
        shape.localRanks(), r, b.slotIds, st);
    NativeKernels.layoutCount(b.slotIds, tokens, nK, nS, nP, nR, b.chunkCounts, st);
    NativeKernels.layoutScan(b.chunkCounts, tokens, nP, nR, b.chunkBase, b.totals, b.slotPrefix,
        b.chunkPairBase, b.pairOffset, st);
    NativeKernels.layoutPositions(b.slotIds, tokens, nK, nS, nP, nR, b.chunkBase, b.chunkPairBase,
        b.pos, b.pairPos, b.pairIdx, b.inRank, b.pairOffset, st);
    if (relay != null) {
      NativeKernels.relayNodeRows(b.slotIds, tokens, nK, nS, nR, relay.localRanks, relay.nodeRow, relay.nodeCounts, st);
    }
    // the read-back: the copy below is synchronous on the legacy stream, which does not wait for
    // this non-blocking stream, so the stream is waited for first
    w.synchronize(r);
    int[] counts = new int[nb + 1 + (relay != null ? relay.nodes : 0)];
    NativeKernels.intsFromDevice(b.totals, counts, 0, nb + 1);
    if (relay != null) NativeKernels.intsFromDevice(relay.nodeCounts, counts, nb + 1, relay.nodes);
    return counts;
  }

  /** The message for rank r's first bad routing entry (flat index {@code flat}); the error path only. */
  static String badRouting(VirtualRanks w, int r, int flat) {
    int nK = w.nK;
    int t = flat / nK;
    int k = flat % nK;
    int[] idx = new int[nK];
    float[] wt = new float[nK];
    NativeKernels.intsFromDevice(w.buf[r].topkIdx + 4L * t * nK, idx, 0, nK);
    NativeKernels.floatsFromDevice(w.buf[r].topkW + 4L * t * nK, wt, 0, nK);
    int e = idx[k];
    int experts = w.shape.experts();
    if (e < -1 || e >= experts) {
      return "rank " + r + ": topkIdx[" + t + "][" + k + "] = " + e + " is outside [0, " + experts + ") (use -1 for 'not routed')";
    }
    for (int q = 0; q < k; q++) {
      if (idx[q] == e) return "rank " + r + ": token " + t + " selects logical expert " + e + " twice (topkIdx[" + t + "][" + q + "] and [" + k + "])";
    }
    return "rank " + r + ": topkWeights[" + t + "][" + k + "] = " + wt[k] + " is not finite";
  }

  /**
   * On destination d, once every rank's layout is done: its receive offsets from every rank's
   * counts, then {@code evStage[d]}.
   */
  static void offsets(VirtualRanks w, int d) {
    RankBuffers b = w.buf[d];
    NativeKernels.recvOffsets(w.totalsOf, d, w.nR, w.nS, w.nP, b.recvCounts, b.slotTotal, b.rowBase,
        b.slotBase, b.pairBase, b.stagingPrefix, w.streams[d]);
    NativeKernels.eventRecord(w.evStage[d], w.streams[d]);
  }
}
