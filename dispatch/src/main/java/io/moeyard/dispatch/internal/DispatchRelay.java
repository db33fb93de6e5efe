package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.PeerMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The node-crossing leg of the fused dispatch: rank (n, l) sends one message to the rank with the
 * same local index on every other node, its relay (m, l), and receives one from each of them.
 * A message carries the sender's whole routing and, once each in ascending token order, the rows
 * (and FP8 scales) of its tokens that have a pair on the relay's node:
 *
 * <pre>
 *   [0, 4TK)            int   expert ids, T x K
 *   [4TK, 8TK)          float weights, T x K
 *   [align64(8TK), +nR) rows, n of them, R = hidden x element bytes
 *   [.., +nS)           FP8 scales, S = hidden / 128 floats per row (nothing otherwise)
 * </pre>
 *
 * T, K and n come from the dispatch's announcements, so both ends know every message's size
 * before it moves; a message with no rows is not sent. The buffers are carved once from peer
 * memory: (nodes - 1) send and (nodes - 1) receive slots of {@link #messageBytes} for
 * {@code maxTokens} tokens each.
 */
final class DispatchRelay {
  final int maxTokens;
  final int topk;
  final int hidden;
  final DType dtype;
  private final int ranks;
  private final int localRanks;
  private final int node;
  private final int local;
  private final long rowBytes;
  private final long scaleBytes;
  private final long slotBytes;
  private final MemorySegment sendArea;
  private final MemorySegment recvArea;
  /** Per peer, this call's message to it / from it (null: none); reused across calls. */
  final MemorySegment[] send;
  final MemorySegment[] recv;
  private final int[] lastToken;
  private final int[] filled;
  /** Per node, the packed rows' offsets in x and in the message: one batched copy per message. */
  private final long[][] srcOff;
  private final long[][] dstOff;
  /** Views of the offset arrays for the copy helper, made with them. */
  private final MemorySegment[] srcOffView;
  private final MemorySegment[] dstOffView;

  DispatchRelay(PeerMemory memory, Topology topology, int rank, int maxTokens, int topk, int hidden, DType dtype) {
    this.maxTokens = maxTokens;
    this.topk = topk;
    this.hidden = hidden;
    this.dtype = dtype;
    this.ranks = topology.worldSize();
    this.localRanks = topology.localRanks();
    this.node = rank / localRanks;
    this.local = rank % localRanks;
    this.rowBytes = (long) hidden * dtype.bytes();
    this.scaleBytes = dtype.hasScales() ? (long) (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES : 0;
    this.slotBytes = align(messageBytes(maxTokens, topk, hidden, dtype));
    long area = Math.max(64, slotBytes * (topology.nodes() - 1));
    this.sendArea = memory.allocate(area, 64);
    this.recvArea = memory.allocate(area, 64);
    this.send = new MemorySegment[ranks];
    this.recv = new MemorySegment[ranks];
    this.lastToken = new int[topology.nodes()];
    this.filled = new int[topology.nodes()];
    this.srcOff = new long[topology.nodes()][maxTokens];
    this.dstOff = new long[topology.nodes()][maxTokens];
    this.srcOffView = new MemorySegment[topology.nodes()];
    this.dstOffView = new MemorySegment[topology.nodes()];
    for (int m = 0; m < srcOffView.length; m++) {
      srcOffView[m] = MemorySegment.ofArray(srcOff[m]);
      dstOffView[m] = MemorySegment.ofArray(dstOff[m]);
    }
  }

  private static long align(long b) {
    return (b + 63) & -64L;
  }

  /** Bytes of a message for {@code tokens} tokens, every one of them carried: the capacity of one slot. */
  static long messageBytes(int tokens, int topk, int hidden, DType dtype) {
    long scales = dtype.hasScales() ? (long) (hidden / DType.FP8_SCALE_BLOCK) * Float.BYTES : 0;
    return align(8L * tokens * topk) + (long) tokens * ((long) hidden * dtype.bytes() + scales);
  }

  /** Peer memory a relay carves: (nodes - 1) send and as many receive slots, and alignment slack. */
  static long peerMemoryBytes(Topology topology, int maxTokens, int topk, int hidden, DType dtype) {
    return 2 * (Math.max(64, align(messageBytes(maxTokens, topk, hidden, dtype)) * (topology.nodes() - 1)) + 64);
  }

  private long size(int tokens, int rows) {
    return rows == 0 ? 0 : align(8L * tokens * topk) + rows * (rowBytes + scaleBytes);
  }

  private int slot(int m) {
    return m < node ? m : m - 1;
  }

  /** The rank that relays for this rank on node {@code m}: the same local index there. */
  int relayOn(int m) {
    return m * localRanks + local;
  }

  /**
   * Packs this rank's messages: per remote node, the routing, then the rows of the tokens with a
   * pair there, each once, in token order.
   */
  void pack(RowBuffer x, Routing routing, DispatchLayout layout, int[] tokensToNode) {
    int tokens = routing.tokens();
    java.util.Arrays.fill(send, null);
    java.util.Arrays.fill(lastToken, -1);
    java.util.Arrays.fill(filled, 0);
    long rowsAt = align(8L * tokens * topk);
    for (int m = 0; m < lastToken.length; m++) {
      if (m == node || tokensToNode[m] == 0) continue;
      MemorySegment msg = sendArea.asSlice(slot(m) * slotBytes, size(tokens, tokensToNode[m]));
      MemorySegment.copy(routing.topkIdx(), 0, msg, ValueLayout.JAVA_INT, 0, tokens * topk);
      MemorySegment.copy(routing.topkWeights(), 0, msg, ValueLayout.JAVA_FLOAT, 4L * tokens * topk, tokens * topk);
      send[relayOn(m)] = msg;
    }
    for (int t = 0; t < tokens; t++) {
      for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) {
        int m = layout.pairRank[q] / localRanks;
        if (m == node || lastToken[m] == t) continue;
        lastToken[m] = t;
        int j = filled[m]++;
        srcOff[m][j] = x.rowOffset(t);
        dstOff[m][j] = rowsAt + j * rowBytes;
        if (scaleBytes > 0) {
          MemorySegment.copy(x.scales(), t * scaleBytes, send[relayOn(m)], rowsAt + tokensToNode[m] * rowBytes + j * scaleBytes,
              scaleBytes);
        }
      }
    }
    for (int m = 0; m < lastToken.length; m++) {
      if (filled[m] > 0) RowCopy.copyRows(x.segment(), srcOff[m], srcOffView[m], send[relayOn(m)], dstOff[m], dstOffView[m], filled[m], rowBytes);
    }
  }

  /** Sizes this call's receive slots from the announcements: one message from each remote rank of this local index. */
  void expect(Announcement[] all) {
    java.util.Arrays.fill(recv, null);
    for (int m = 0; m < lastToken.length; m++) {
      if (m == node) continue;
      Announcement a = all[relayOn(m)];
      long b = size(a.tokens(), a.tokensToNode()[node]);
      if (b > 0) recv[relayOn(m)] = recvArea.asSlice(slot(m) * slotBytes, b);
    }
  }

  /** The routing {@code source} sent here (copied out, since the layout keeps referring to it). */
  Routing routing(int source, int tokens) {
    MemorySegment msg = recv[source];
    int n = tokens * topk;
    int[] idx = new int[n];
    float[] w = new float[n];
    MemorySegment.copy(msg, ValueLayout.JAVA_INT, 0, idx, 0, n);
    MemorySegment.copy(msg, ValueLayout.JAVA_FLOAT, 4L * n, w, 0, n);
    return new Routing(tokens, topk, idx, w);
  }

  /** The rows {@code source} sent here, {@code rows} of them, as a row buffer over the message. */
  RowBuffer rows(int source, int tokens, int rows) {
    MemorySegment msg = recv[source];
    long rowsAt = align(8L * tokens * topk);
    MemorySegment scales = scaleBytes == 0 ? null : msg.asSlice(rowsAt + rows * rowBytes, rows * scaleBytes);
    return new RowBuffer(msg, rowsAt, rows, hidden, dtype, scales);
  }
}
