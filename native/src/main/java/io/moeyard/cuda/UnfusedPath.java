package io.moeyard.cuda;

/**
 * The unfused baseline (Megatron's alltoall token dispatcher), one rank's part: permute every
 * selection into a rank-major buffer, copy each destination's block into its [source][slot]
 * staging, sort the chunks into the expert-major layout; combine reverses it with the fused
 * path's arithmetic. Peers are visited in rotated order (r+1, r+2, ...) so that no receiver is hit
 * by all senders at once (shuffle-engine/docs/data-path.md, "Movement"). Enqueues only.
 *
 * <p>Ranks on other machines are out of reach of copies: their blocks cross on the world's
 * channel between machines instead (NCCL), one exchange per array (rows, weights, FP8 scales),
 * each block from the permuted buffer straight into the peer's staging (the all-to-all of
 * Megatron's dispatcher), and back for the combine.
 */
final class UnfusedPath {
  private UnfusedPath() {}

  /**
   * The exchange arguments between machines, reused by every call: [send address, send bytes,
   * receive address, receive bytes][rank].
   */
  static long[][] farArgs(int ranks) {
    return new long[4][ranks];
  }

  /** Source rank r: permute its tokens and copy each destination's block into that destination's staging. */
  static void dispatchSend(VirtualRanks w, int r, DeviceRows x, WorldCounts c, DeviceChannel far, long[][] args) {
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
      if (!w.reach[d]) continue;
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
    if (!w.machines) return;
    int[] staging = c.stagingPrefix(r);
    blocks(w.reach, slotPrefix, staging, nS, s.permX, s.stagingX, rb, args);
    far.exchange(args[0], args[1], args[2], args[3], st);
    blocks(w.reach, slotPrefix, staging, nS, s.permW, s.stagingW, 4, args);
    far.exchange(args[0], args[1], args[2], args[3], st);
    if (sc > 0) {
      blocks(w.reach, slotPrefix, staging, nS, s.permScales, s.stagingScales, 4L * sc, args);
      far.exchange(args[0], args[1], args[2], args[3], st);
    }
  }

  /**
   * One array's blocks between this rank and the ranks out of its reach, into {@code args}: to
   * peer q the rows of q's slots in this rank's {@code sendBase} ({@code sent}: prefix by
   * destination slot), from peer q the rows of q's source block in {@code recvBase}
   * ({@code received}: prefix by source rank and slot), {@code rowBytes} each; 0 for peers
   * within reach. Both ends derive the sizes from the same counts, so they agree pairwise.
   */
  static void blocks(boolean[] reach, int[] sent, int[] received, int nS, long sendBase, long recvBase, long rowBytes,
      long[][] args) {
    for (int q = 0; q < reach.length; q++) {
      boolean out = !reach[q];
      int sendRows = out ? sent[(q + 1) * nS] - sent[q * nS] : 0;
      int recvRows = out ? received[(q + 1) * nS] - received[q * nS] : 0;
      args[0][q] = sendRows > 0 ? sendBase + sent[q * nS] * rowBytes : 0;
      args[1][q] = sendRows * rowBytes;
      args[2][q] = recvRows > 0 ? recvBase + received[q * nS] * rowBytes : 0;
      args[3][q] = recvRows * rowBytes;
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
  static void combineSend(VirtualRanks w, int d, DeviceRows y, WorldCounts c, DeviceChannel far, long[][] args) {
    int nR = w.nR;
    int nS = w.nS;
    int cb = w.shape.combineRowBytes();
    RankBuffers s = w.buf[d];
    long st = w.streams[d];
    NativeKernels.sortChunksBack(y.address(), s.stagingPrefix, s.rowBase, nR, nS, c.rows[d], cb, s.stagingY, st);
    int[] staging = c.stagingPrefix(d);
    for (int i = 1; i <= nR; i++) {
      int r = (d + i) % nR;
      if (!w.reach[r]) continue;
      int[] homePrefix = c.slotPrefix(r);
      int to = homePrefix[d * nS];
      int n = homePrefix[(d + 1) * nS] - to;
      int from = staging[r * nS];
      NativeKernels.copyDeviceToDeviceAsync(w.buf[r].returnY + (long) to * cb, s.stagingY + (long) from * cb,
          (long) n * cb, st);
    }
    if (!w.machines) return;
    // the reverse of the dispatch's blocks: from this rank's staging back into each home's return rows
    blocks(w.reach, staging, c.slotPrefix(d), nS, s.stagingY, s.returnY, cb, args);
    far.exchange(args[0], args[1], args[2], args[3], st);
  }

  /** Home rank r, every expert rank's rows in: weight and sum them into {@code out}. */
  static void combineReceive(VirtualRanks w, int r, int tokens, DeviceRows out) {
    RankBuffers s = w.buf[r];
    NativeKernels.unpermute(w.shape.combineCode(), s.returnY, s.topkW, s.slotIds, s.pos, s.slotPrefix, tokens, w.nK,
        w.nS, w.nR, w.shape.localRanks(), w.nH, out.address(), w.streams[r]);
  }
}
