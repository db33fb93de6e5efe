package io.moeyard.cuda;

/**
 * The unfused baseline (Megatron's alltoall token dispatcher), one rank's part: permute every
 * selection into a rank-major buffer, copy each destination's block into its [source][slot]
 * staging, sort the chunks into the expert-major layout; combine reverses it with the fused
 * path's arithmetic. Peers are visited in rotated order (r+1, r+2, ...) so that no receiver is hit
 * by all senders at once (shuffle-engine/docs/data-path.md, "Movement"). Enqueues only.
 */
final class UnfusedPath {
  private UnfusedPath() {}

  /** Source rank r: permute its tokens and copy each destination's block into that destination's staging. */
  static void dispatchSend(VirtualRanks w, int r, DeviceRows x, WorldCounts c) {
    KernelShape shape = w.shape;
    int nR = w.nR;
    int nS = w.nS;
    int sc = shape.scaleCols();
    int rb = shape.rowBytes();
    RankBuffers s = w.buf[r];
    long st = w.streams[r];
    NativeKernels.permute(x.address(), x.scalesAddress(), sc, s.topkW, s.slotIds, s.pos, s.slotPrefix, c.tokens[r],
        w.nK, rb, s.permX, s.permScales, s.permW, st);
    int[] slotPrefix = c.slotPrefix(r);
    for (int i = 1; i <= nR; i++) {
      int d = (r + i) % nR;
      RankBuffers dst = w.buf[d];
      int from = slotPrefix[d * nS];
      int n = slotPrefix[(d + 1) * nS] - from;
      int to = c.stagingPrefix(d)[r * nS];
      NativeKernels.copyDeviceToDeviceAsync(dst.stagingX + (long) to * rb, s.permX + (long) from * rb, (long) n * rb, st);
      NativeKernels.copyDeviceToDeviceAsync(dst.stagingW + 4L * to, s.permW + 4L * from, 4L * n, st);
      if (sc > 0) {
        NativeKernels.copyDeviceToDeviceAsync(dst.stagingScales + 4L * to * sc, s.permScales + 4L * from * sc,
            4L * n * sc, st);
      }
    }
  }

  /** Destination d, every source's copies in: sort the staging into the expert-major rows {@code into}. */
  static void dispatchReceive(VirtualRanks w, int d, WorldCounts c, DeviceRows into) {
    RankBuffers s = w.buf[d];
    NativeKernels.sortChunks(s.stagingX, s.stagingScales, s.stagingW, s.stagingPrefix, s.rowBase, w.nR, w.nS,
        c.rows[d], w.shape.rowBytes(), w.shape.scaleCols(), into.address(), into.scalesAddress(), s.recvW,
        w.streams[d]);
  }

  /** Expert rank d: its outputs {@code y} back into source order, each home's block copied into the home's buffer. */
  static void combineSend(VirtualRanks w, int d, DeviceRows y, WorldCounts c) {
    int nR = w.nR;
    int nS = w.nS;
    int cb = w.shape.combineRowBytes();
    RankBuffers s = w.buf[d];
    long st = w.streams[d];
    NativeKernels.sortChunksBack(y.address(), s.stagingPrefix, s.rowBase, nR, nS, c.rows[d], cb, s.stagingY, st);
    int[] staging = c.stagingPrefix(d);
    for (int i = 1; i <= nR; i++) {
      int r = (d + i) % nR;
      int[] homePrefix = c.slotPrefix(r);
      int to = homePrefix[d * nS];
      int n = homePrefix[(d + 1) * nS] - to;
      int from = staging[r * nS];
      NativeKernels.copyDeviceToDeviceAsync(w.buf[r].returnY + (long) to * cb, s.stagingY + (long) from * cb,
          (long) n * cb, st);
    }
  }

  /** Home rank r, every expert rank's rows in: weight and sum them into {@code out}. */
  static void combineReceive(VirtualRanks w, int r, int tokens, DeviceRows out) {
    RankBuffers s = w.buf[r];
    NativeKernels.unpermute(w.shape.combineCode(), s.returnY, s.topkW, s.slotIds, s.pos, s.slotPrefix, tokens, w.nK,
        w.nS, w.nR, w.shape.localRanks(), w.nH, out.address(), w.streams[r]);
  }
}
