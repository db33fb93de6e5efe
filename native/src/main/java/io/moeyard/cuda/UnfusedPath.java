package io.moeyard.cuda;

/**
 * The unfused baseline (Megatron's alltoall token dispatcher): permute every selection into a
 * rank-major buffer, copy each destination's block into its [source][slot] staging, sort the
 * chunks into the expert-major layout; combine reverses it with the fused path's arithmetic.
 * Peers are visited in rotated order (r+1, r+2, ...) so that no receiver is hit by all senders at
 * once (shuffle-engine/docs/data-path.md, "Movement"). Enqueues only: the caller waits.
 */
final class UnfusedPath {
  private UnfusedPath() {}

  /** The data phase of a dispatch, after {@link LayoutPhase#run}: timed from every rank's offsets. */
  static void dispatch(VirtualRanks w, Clock clock) {
    KernelShape shape = w.shape;
    int nR = w.nR;
    int nS = w.nS;
    int sc = shape.scaleCols();
    int rb = shape.rowBytes();
    clock.start(w.evStage);
    for (int r = 0; r < nR; r++) {
      RankBuffers s = w.buf[r];
      RankCounts c = w.counts[r];
      long st = w.streams[r];
      NativeKernels.permute(s.x, s.scales, sc, s.topkW, s.slotIds, s.pos, s.slotPrefix, c.tokens,
          w.nK, rb, s.permX, s.permScales, s.permW, st);
      for (int i = 1; i <= nR; i++) {
        int d = (r + i) % nR;
        RankBuffers dst = w.buf[d];
        int from = c.slotPrefix[d * nS];
        int n = c.slotPrefix[(d + 1) * nS] - from;
        int to = w.counts[d].stagingPrefix[r * nS];
        NativeKernels.copyDeviceToDeviceAsync(
            dst.stagingX + (long) to * rb, s.permX + (long) from * rb, (long) n * rb, st);
        NativeKernels.copyDeviceToDeviceAsync(
            dst.stagingW + 4L * to, s.permW + 4L * from, 4L * n, st);
        if (sc > 0) {
          NativeKernels.copyDeviceToDeviceAsync(dst.stagingScales + 4L * to * sc,
              s.permScales + 4L * from * sc, 4L * n * sc, st);
        }
      }
      NativeKernels.eventRecord(w.evSend[r], st);
    }
    for (int d = 0; d < nR; d++) {
      for (int r = 0; r < nR; r++) {
        NativeKernels.streamWaitEvent(w.streams[d], w.evSend[r]);
      }
      RankBuffers s = w.buf[d];
      NativeKernels.sortChunks(s.stagingX, s.stagingScales, s.stagingW, s.stagingPrefix,
          s.rowBase, nR, nS, w.counts[d].rows, rb, sc, s.recvX, s.recvScales, s.recvW,
          w.streams[d]);
      NativeKernels.eventRecord(w.evDone[d], w.streams[d]);
    }
    clock.stop();
  }

  /** A combine after either dispatch, the expert outputs uploaded. */
  static void combine(VirtualRanks w, Clock clock) {
    int nR = w.nR;
    int nS = w.nS;
    int cb = w.shape.combineRowBytes();
    int dt = w.shape.combineCode();
    clock.start(null);
    for (int d = 0; d < nR; d++) {
      RankBuffers s = w.buf[d];
      RankCounts c = w.counts[d];
      long st = w.streams[d];
      NativeKernels.sortChunksBack(s.y, s.stagingPrefix, s.rowBase, nR, nS, c.rows, cb,
          s.stagingY, st);
      for (int i = 1; i <= nR; i++) {
        int r = (d + i) % nR;
        RankBuffers home = w.buf[r];
        int to = w.counts[r].slotPrefix[d * nS];
        int n = w.counts[r].slotPrefix[(d + 1) * nS] - to;
        int from = c.stagingPrefix[r * nS];
        NativeKernels.copyDeviceToDeviceAsync(
            home.returnY + (long) to * cb, s.stagingY + (long) from * cb, (long) n * cb, st);
      }
      NativeKernels.eventRecord(w.evSend[d], st);
    }
    for (int r = 0; r < nR; r++) {
      RankBuffers s = w.buf[r];
      for (int d = 0; d < nR; d++) {
        NativeKernels.streamWaitEvent(w.streams[r], w.evSend[d]);
      }
      NativeKernels.unpermute(dt, s.returnY, s.topkW, s.slotIds, s.pos, s.slotPrefix,
          w.counts[r].tokens, w.nK, nS, w.nH, s.out, w.streams[r]);
      NativeKernels.eventRecord(w.evDone[r], w.streams[r]);
    }
    clock.stop();
  }
}
