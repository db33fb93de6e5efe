package io.moeyard.cuda;

/**
 * The node-level (two-hop) path of the fused dispatch and combine, one rank's part, for more than
 * one node with {@code nodePath RELAY} (shuffle-engine/docs/data-path.md, "The node-level path").
 * Rank s = (node n, local l) stores straight into its own node's windows; for every other node m
 * it packs one message (its routing, then the rows of its tokens with a pair on m, each once) for
 * its relay (m, l), and the messages cross through the {@link DeviceChannel}; the relay recomputes
 * s's layout from the routing and makes the stores s would have made on node m, so the windows are
 * the single-hop path's, entry for entry. Combine: an expert rank stores a pair partial of a home
 * on its own node into that home's partials, and one of a home s on another node into the staging
 * of s's relay on its node; the relay sums them into one node partial per (token, node) and sends
 * those home through the channel; home sums its own node's partials and the node partials in node
 * order. Enqueues on the rank's stream, like {@link FusedPath}; the caller orders the phases
 * across ranks with events.
 *
 * <p>The dispatch announces, beside the layout counts, each rank's tokens per node
 * ({@link #announced}): from them every rank knows every message's size.
 */
final class RelayPath {
  private RelayPath() {}

  /**
   * What rank r announces after its layout ({@link LayoutPhase#run(VirtualRanks, int, int,
   * RelayBuffers)}: {@code nb} counts, the routing's verdict, tokens per node): the counts, then its
   * tokens per node.
   */
  static int[] announced(int[] layoutCounts, int nb, int nodes) {
    int[] a = java.util.Arrays.copyOf(layoutCounts, nb + nodes);
    System.arraycopy(layoutCounts, nb + 1, a, nb, nodes);
    return a;
  }

  /** Tokens of rank q with a pair on node m, as q announced them. */
  static int tokensToNode(WorldCounts c, int nP, int nR, int q, int m) {
    return c.totals[q][nP + nR + m];
  }

  /** Rows rank r sends across nodes on this path: one per (token, remote node) it has a pair on. */
  static int rowsSentAcrossNodes(WorldCounts c, int nP, int nR, int localRanks, int r) {
    int n = 0;
    for (int m = 0; m < nR / localRanks; m++) {
      if (m != r / localRanks) n += tokensToNode(c, nP, nR, r, m);
    }
    return n;
  }

  /** Rank r's dispatch: its own node straight, its messages out, then as a relay the stores of what came in. */
  static void dispatch(VirtualRanks w, RelayBuffers rb, DeviceChannel channel, int r, DeviceRows x, int tokens, WorldCounts c) {
    KernelShape shape = w.shape;
    RankBuffers b = w.buf[r];
    long st = w.streams[r];
    int nR = w.nR;
    int nK = w.nK;
    int nL = rb.localRanks;
    int node = rb.node;
    int rowBytes = shape.rowBytes();
    int sc = shape.scaleCols();
    store(w, r, x.address(), x.scalesAddress(), b.topkW, b.slotIds, b.pos, b.pairPos, b.pairIdx, tokens, r, 0L, 1, node * nL);
    NativeKernels.relayPack(x.address(), x.scalesAddress(), sc, b.topkIdx, b.topkW, rb.nodeRow, rb.nodeCounts, tokens, nK,
        rb.nodes, node, rowBytes, rb.sendArea, rb.slotBytes, st);
    long[] sendAt = rb.sendAt;
    long[] sendBytes = rb.sendBytes;
    long[] recvAt = rb.recvAt;
    long[] recvBytes = rb.recvBytes;
    java.util.Arrays.fill(sendAt, 0L);
    java.util.Arrays.fill(recvAt, 0L);
    messageSizes(c, w.nP, nR, nL, r, nK, rowBytes, sc, sendBytes, recvBytes);
    for (int m = 0; m < rb.nodes; m++) {
      if (m == node) continue;
      int q = m * nL + r % nL;
      long at = rb.slot(m) * rb.slotBytes;
      sendAt[q] = sendBytes[q] > 0 ? rb.sendArea + at : 0L;
      recvAt[q] = recvBytes[q] > 0 ? rb.recvArea + at : 0L;
    }
    channel.exchange(sendAt, sendBytes, recvAt, recvBytes, st);
    for (int m = 0; m < rb.nodes; m++) {
      if (m == node) continue;
      int q = m * nL + r % nL;
      int i = rb.slot(m);
      int n = tokensToNode(c, w.nP, nR, q, node);
      int tq = c.tokens[q];
      rb.relayedTokens[i] = n > 0 ? tq : -1;
      if (n == 0) continue;
      long msg = rb.recvArea + i * rb.slotBytes;
      relayedLayout(w, rb, r, i, q, msg, tq);
      long rows = msg + RelayBuffers.rowsAt(tq, nK);
      long scales = sc > 0 ? msg + RelayBuffers.scalesAt(tq, nK, n, rowBytes) : 0L;
      store(w, r, rows, scales, msg + 4L * tq * nK, rb.slotIds[i], rb.pos[i], rb.pairPos[i], rb.pairIdx[i], tq, q,
          rb.srcNodeRow[i] + 4L * node, rb.nodes, node * nL);
    }
  }

  /**
   * Rank r's dispatch messages: to its relay (m, l) on every other node m, one carrying its tokens
   * with a pair on m, and from the rank (m, l) whose relay it is, one carrying that rank's tokens
   * with a pair on r's node (0: none). Both ends compute each size from the same announcements.
   */
  static void messageSizes(WorldCounts c, int nP, int nR, int localRanks, int r, int topk, int rowBytes, int scaleCols,
      long[] sendBytes, long[] recvBytes) {
    java.util.Arrays.fill(sendBytes, 0L);
    java.util.Arrays.fill(recvBytes, 0L);
    int node = r / localRanks;
    for (int m = 0; m < nR / localRanks; m++) {
      if (m == node) continue;
      int q = m * localRanks + r % localRanks; // r's relay on m, and the rank of m whose relay r is
      sendBytes[q] = RelayBuffers.messageBytes(c.tokens[r], topk, tokensToNode(c, nP, nR, r, m), rowBytes, scaleCols);
      recvBytes[q] = RelayBuffers.messageBytes(c.tokens[q], topk, tokensToNode(c, nP, nR, q, node), rowBytes, scaleCols);
    }
  }

  /**
   * Rank r's node partials: as the relay of (m, l), one row per token of that rank with a pair on
   * r's node; as a home, one row per own token with a pair on m, from (m, l).
   */
  static void nodePartialSizes(WorldCounts c, int nP, int nR, int localRanks, int r, long rowBytes, long[] sendBytes,
      long[] recvBytes) {
    java.util.Arrays.fill(sendBytes, 0L);
    java.util.Arrays.fill(recvBytes, 0L);
    int node = r / localRanks;
    for (int m = 0; m < nR / localRanks; m++) {
      if (m == node) continue;
      int q = m * localRanks + r % localRanks;
      sendBytes[q] = tokensToNode(c, nP, nR, q, node) * rowBytes;
      recvBytes[q] = tokensToNode(c, nP, nR, r, m) * rowBytes;
    }
  }

  /** Source q's layout as q computed it (same replica rule, same pairs), from the routing in its message. */
  private static void relayedLayout(VirtualRanks w, RelayBuffers rb, int r, int i, int q, long msg, int tq) {
    KernelShape shape = w.shape;
    long st = w.streams[r];
    int nK = w.nK;
    NativeKernels.mapSlots(msg, tq, nK, w.mapOffsets, w.mapSlots, shape.experts(), w.nS, rb.localRanks, q, rb.slotIds[i], st);
    NativeKernels.layoutCount(rb.slotIds[i], tq, nK, w.nS, w.nP, w.nR, rb.chunkCounts, st);
    NativeKernels.layoutScan(rb.chunkCounts, tq, w.nP, w.nR, rb.chunkBase, rb.totals[i], rb.slotPrefix[i],
        rb.chunkPairBase[i], rb.pairOffset[i], st);
    NativeKernels.layoutPositions(rb.slotIds[i], tq, nK, w.nS, w.nP, w.nR, rb.chunkBase, rb.chunkPairBase[i], rb.pos[i],
        rb.pairPos[i], rb.pairIdx[i], rb.inRank[i], rb.pairOffset[i], st);
    NativeKernels.relayNodeRows(rb.slotIds[i], tq, nK, w.nS, w.nR, rb.localRanks, rb.srcNodeRow[i], rb.srcNodeCounts[i], st);
  }

  /** The fused store of source {@code src}'s tokens into the ranks of one node, through rank r's tables. */
  private static void store(VirtualRanks w, int r, long x, long scales, long topkW, long slotIds, long pos, long pairPos,
      long pairIdx, int tokens, int src, long rowIndex, int rowStride, int firstRank) {
    KernelShape shape = w.shape;
    NativeKernels.dispatchNode(x, scales, shape.scaleCols(), topkW, slotIds, pos, pairPos, pairIdx, tokens, w.nK, w.nS,
        w.nR, src, shape.rowBytes(), w.recvXTable[r], w.recvScalesTable[r], w.recvWOf, w.rowBaseOf, w.pairBaseOf,
        w.pairSrcOf, w.pairHomeOf, w.pairTokenOf, w.pairRowsOf, rowIndex, rowStride, firstRank,
        firstRank + shape.localRanks(), w.streams[r]);
  }

  /**
   * Where expert rank d's pairs of each source go when not home: for a source on another node, the
   * staging of its relay on d's node (address of {@code relays[relay]}'s staging in
   * {@code stageRows}), pair i at row {@code stageRow[src] + i}: the source's slot there, the run of
   * d's pairs (after those of the lower ranks of d's node, in the source's destination order),
   * less the source's first pair index on d. Pure: host-tested.
   */
  static void stageRows(WorldCounts c, int nP, int nR, int localRanks, int d, int stagingPerSource, long[] stagingOf,
      long[] stageRows, int[] stageRow) {
    int node = d / localRanks;
    int pairBase = 0;
    for (int src = 0; src < nR; src++) {
      int m = src / localRanks;
      if (m == node) {
        stageRows[src] = 0L;
        stageRow[src] = 0;
      } else {
        int runStart = 0;
        for (int p = node * localRanks; p < d; p++) runStart += c.totals[src][nP + p];
        int slot = m < node ? m : m - 1;
        stageRows[src] = stagingOf[node * localRanks + src % localRanks];
        stageRow[src] = slot * stagingPerSource + runStart - pairBase;
      }
      pairBase += c.totals[src][nP + d];
    }
  }

  /** Expert rank d: each received pair's partial, home (own node) or into its source's relay's staging. */
  static void combineSend(VirtualRanks w, RelayBuffers rb, long[] stagingOf, int d, DeviceRows y, WorldCounts c) {
    RankBuffers b = w.buf[d];
    stageRows(c, w.nP, w.nR, rb.localRanks, d, rb.stagingPerSource, stagingOf, rb.stageRows, rb.stageRow);
    NativeKernels.relayCombineSend(w.shape.combineCode(), y.address(), b.recvW, b.pairSrc, b.pairHome, b.pairRows,
        c.pairs[d], w.nK, w.nH, w.partialsOf, rb.stageRows, rb.stageRow, w.streams[d]);
  }

  /**
   * Rank r once every rank's partials are in: as a relay, the node partials of each source it
   * relayed, sent home through the channel; as a home, its own node's partials and the node
   * partials it received summed into {@code out}.
   */
  static void combineHome(VirtualRanks w, RelayBuffers rb, DeviceChannel channel, int r, int tokens, DeviceRows out,
      WorldCounts c) {
    RankBuffers b = w.buf[r];
    long st = w.streams[r];
    int nR = w.nR;
    int nL = rb.localRanks;
    int node = rb.node;
    int code = w.shape.combineCode();
    long cb = w.shape.combineRowBytes();
    long[] sendAt = rb.sendAt;
    long[] sendBytes = rb.sendBytes;
    long[] recvAt = rb.recvAt;
    long[] recvBytes = rb.recvBytes;
    java.util.Arrays.fill(sendAt, 0L);
    java.util.Arrays.fill(recvAt, 0L);
    nodePartialSizes(c, w.nP, nR, nL, r, cb, sendBytes, recvBytes);
    for (int m = 0; m < rb.nodes; m++) {
      if (m == node) continue;
      int q = m * nL + r % nL;
      int i = rb.slot(m);
      long rows = (long) i * rb.slotTokens * cb;
      int tq = rb.relayedTokens[i];
      if (tq >= 0) {
        NativeKernels.relayNodeSum(code, rb.staging + (long) i * rb.stagingPerSource * cb, rb.slotIds[i], rb.pairPos[i],
            rb.totals[i] + 4L * w.nP, rb.srcNodeRow[i], tq, w.nK, w.nS, nR, nL, node, w.nH, rb.nodeSend + rows, st);
      }
      sendAt[q] = sendBytes[q] > 0 ? rb.nodeSend + rows : 0L;
      recvAt[q] = recvBytes[q] > 0 ? rb.nodeRecv + rows : 0L;
    }
    channel.exchange(sendAt, sendBytes, recvAt, recvBytes, st);
    NativeKernels.relayHome(code, b.partials, rb.nodeRecv, b.pairOffset, b.slotIds, rb.nodeRow, tokens, w.nK, w.nS, nR, nL,
        node, w.nH, rb.slotTokens, out.address(), st);
  }
}
