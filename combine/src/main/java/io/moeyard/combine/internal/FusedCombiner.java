package io.moeyard.combine.internal;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import io.moeyard.engine.Topology;
import java.lang.foreign.MemorySegment;

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
 *
 * <p>On the node-level path (a dispatch that relayed its rows, more than one node) an expert
 * rank stores its partials for a source on another node into the staging of that source's relay
 * on its own node (the rank with the source's local index); the relay sums them into one node
 * partial per (token, node) and sends those home through {@link Transport#sendRecv}; home sums
 * its own node's partials and the received node partials in node order.
 */
public final class FusedCombiner extends Combiner {
  private final int[] pairCount;
  /** One chunk's partials, one per pair: the pair's rows, weighted. */
  private final SumBatch pairSums = new SumBatch(false, scratch);
  /** Every token's sum of its partials at home (one node). */
  private final SumBatch tokenSums = new SumBatch(false, scratch);
  /** Every token's sum of its partials at home, node by node (several nodes). */
  private final SumBatch nodeTokenSums = new SumBatch(true, scratch);
  /** A relay's node partials: per remote source, per token, the partials of this node's ranks. */
  private final SumBatch nodeSums = new SumBatch(false, scratch);
  private final int nodes;
  private final int localRanks;
  /** Tokens per source and call the node relay's buffers hold, or 0: no relay buffers. */
  private final int relayTokens;
  private final int stagingPerSource;
  private RowBuffer staging;
  private RowBuffer relaySend;
  private final MemorySegment[] sendSegs;
  private final MemorySegment[] recvSegs;
  /** Where this call's received node partials start in the home window. */
  private int receivedAt;

  public FusedCombiner(Transport transport) {
    this(transport, DispatchOptions.DEFAULT_CHUNK_PAIRS);
  }

  public FusedCombiner(Transport transport, int chunkPairs) {
    super(transport, chunkPairs);
    this.pairCount = new int[ranks];
    this.nodes = transport.topology().nodes();
    this.localRanks = transport.topology().localRanks();
    this.relayTokens = 0;
    this.stagingPerSource = 0;
    this.sendSegs = null;
    this.recvSegs = null;
  }

  /**
   * Partials peers store into live in {@code memory}, room for {@code maxTokens} tokens of
   * top-{@code topk}: what a communicator builds (and what a process transport needs).
   */
  public FusedCombiner(Transport transport, int chunkPairs, PeerMemory memory, int maxTokens, int topk) {
    this(transport, chunkPairs, memory, maxTokens, topk, false);
  }

  /**
   * As {@link #FusedCombiner(Transport, int, PeerMemory, int, int)}; with {@code nodeRelay} (and
   * more than one node) it also carves the node relay's buffers, so that it can return a
   * dispatch that took the node-level path ({@link #peerMemoryBytes(boolean, Topology, int, int, int, DType)}).
   */
  public FusedCombiner(Transport transport, int chunkPairs, PeerMemory memory, int maxTokens, int topk, boolean nodeRelay) {
    super(transport, chunkPairs, java.util.Objects.requireNonNull(memory, "memory"),
        homeRows(true, transport.size(), maxTokens, topk) + relayHomeRows(nodeRelay, transport.topology(), maxTokens));
    this.pairCount = new int[ranks];
    this.nodes = transport.topology().nodes();
    this.localRanks = transport.topology().localRanks();
    boolean on = nodeRelay && nodes > 1;
    this.relayTokens = on ? Math.max(1, maxTokens) : 0;
    this.stagingPerSource = relayTokens * Math.min(topk, localRanks);
    this.sendSegs = on ? new MemorySegment[ranks] : null;
    this.recvSegs = on ? new MemorySegment[ranks] : null;
    Machines.require(transport, "the fused single-hop combine", !on);
  }

  /** Home-window rows the node relay adds: one received node partial per token and remote node. */
  private static int relayHomeRows(boolean nodeRelay, Topology topology, int maxTokens) {
    return nodeRelay && topology.nodes() > 1 ? (topology.nodes() - 1) * Math.max(1, maxTokens) : 0;
  }

  /**
   * Peer memory a fused combiner carves on one rank of {@code topology}: its home window
   * ({@code maxTokens x min(topk, ranks)} partials, plus {@code (nodes - 1) x maxTokens} received
   * node partials when relaying), and for the relay a staging of {@code (nodes - 1) x maxTokens x
   * min(topk, localRanks)} partials and {@code (nodes - 1) x maxTokens} node partials to send.
   */
  public static long peerMemoryBytes(boolean nodeRelay, Topology topology, int maxTokens, int topk, int hidden, DType dtype) {
    long b = PeerMemory.rowsBytes(homeRows(true, topology.worldSize(), maxTokens, topk)
        + relayHomeRows(nodeRelay, topology, maxTokens), hidden, dtype);
    if (nodeRelay && topology.nodes() > 1) {
      long t = (long) (topology.nodes() - 1) * Math.max(1, maxTokens);
      b += PeerMemory.rowsBytes(t * Math.min(topk, topology.localRanks()), hidden, dtype) + PeerMemory.rowsBytes(t, hidden, dtype);
    }
    return b;
  }

  @Override
  String relayProblem(DispatchHandle handle) {
    if (relayTokens == 0) return super.relayProblem(handle);
    // its own tokens come back as node partials, the relayed sources' partials go through its staging
    int most = handle.layout().tokens;
    int who = rank;
    for (int s = 0; s < ranks; s++) {
      DispatchLayout l = handle.relayedLayout(s);
      if (l != null && l.tokens > most) {
        most = l.tokens;
        who = s;
      }
    }
    return most <= relayTokens ? null
        : "rank " + rank + ": the node relay holds " + relayTokens + " tokens per rank, the dispatch relayed " + most
            + " of rank " + who;
  }

  private int slot(int m, int node) {
    return m < node ? m : m - 1;
  }

  @Override
  HomeWindow homeWindow(DispatchHandle handle, int hidden, DType dtype) {
    DispatchLayout layout = handle.layout();
    if (!handle.nodeRelay()) return new HomeWindow(scratchRows(layout.pairs(), hidden, dtype), layout.destPairStart);
    // received node partials follow the partials of this node's ranks
    receivedAt = layout.pairs();
    RowBuffer rows = scratchRows(layout.pairs() + (nodes - 1) * relayTokens, hidden, dtype);
    if (staging == null || staging.hidden() != hidden || staging.dtype() != dtype) {
      staging = memory.rows((nodes - 1) * stagingPerSource, hidden, dtype);
      relaySend = memory.rows((nodes - 1) * relayTokens, hidden, dtype);
    }
    // source s's partials from rank p of this node: p's pairs of s, in s's destination order
    int node = rank / localRanks;
    int[] start = new int[ranks * ranks];
    java.util.Arrays.fill(start, -1);
    for (int m = 0; m < nodes; m++) {
      int s = m * localRanks + rank % localRanks;
      DispatchLayout l = handle.relayedLayout(s);
      if (m == node || l == null) continue;
      int base = slot(m, node) * stagingPerSource - l.destPairStart[node * localRanks];
      for (int p = node * localRanks; p < (node + 1) * localRanks; p++) start[s * ranks + p] = base + l.destPairStart[p];
    }
    return new HomeWindow(rows, layout.destPairStart, staging, start);
  }

  @Override
  void send(DispatchHandle handle, RowBuffer y, HomeWindow[] homes) {
    for (int r = 0; r < ranks; r++) pairCount[r] = handle.sourcePairStart(r + 1) - handle.sourcePairStart(r);
    boolean relay = handle.nodeRelay();
    int node = rank / localRanks;
    ChunkSchedule.forEachChunk(rank, pairCount, chunk, (r, from, to) -> {
      // source r's pairs here are its destination-ordered pairs to this rank, so their partials
      // form one sequential run at home (or at r's relay on this node), streamed there (a plain
      // store would first read every line it overwrites)
      int base = handle.sourcePairStart(r);
      pairSums.clear();
      for (int q = base + from; q < base + to; q++) {
        for (int i = handle.pairRowStart(q), end = handle.pairRowStart(q + 1); i < end; i++) {
          int row = handle.pairRow(i);
          pairSums.term(row, handle.receivedWeight(row));
        }
        pairSums.endOutput();
      }
      if (relay && r / localRanks != node) {
        HomeWindow at = homes[node * localRanks + r % localRanks];
        pairSums.run(y, true, at.staging(), at.stagingStart()[r * ranks + rank] + from, true);
      } else {
        pairSums.run(y, true, homes[r].rows(), homes[r].peerStart()[rank] + from, true);
      }
    });
  }

  @Override
  void relayNodePartials(DispatchHandle handle, HomeWindow home) {
    int node = rank / localRanks;
    java.util.Arrays.fill(sendSegs, null);
    java.util.Arrays.fill(recvSegs, null);
    long rowBytes = relaySend.rowBytes();
    for (int m = 0; m < nodes; m++) {
      int s = m * localRanks + rank % localRanks;
      DispatchLayout l = handle.relayedLayout(s);
      if (m == node || l == null) continue;
      // one row per token of s with a pair on this node, in token order: its partials here, by rank
      int[] at = l.destPosition();
      int base = slot(m, node) * stagingPerSource - l.destPairStart[node * localRanks];
      nodeSums.clear();
      for (int t = 0; t < l.tokens; t++) {
        boolean any = false;
        for (int q = l.pairOffset[t]; q < l.pairOffset[t + 1]; q++) {
          if (l.pairRank[q] / localRanks != node) continue;
          nodeSums.term(base + at[q], 1f);
          any = true;
        }
        if (any) nodeSums.endOutput();
      }
      int first = slot(m, node) * relayTokens;
      nodeSums.run(staging, false, relaySend, first, false);
      sendSegs[s] = relaySend.segment().asSlice(relaySend.rowOffset(first), nodeSums.outputs() * rowBytes);
    }
    // as a home: one node partial per own token and remote node, from the relay there
    DispatchLayout mine = handle.layout();
    int[] perNode = mine.tokensToNode(localRanks);
    RowBuffer rows = home.rows();
    int row = receivedAt;
    for (int m = 0; m < nodes; m++) {
      if (m == node || perNode[m] == 0) continue;
      recvSegs[m * localRanks + rank % localRanks] = rows.segment().asSlice(rows.rowOffset(row), perNode[m] * rowBytes);
      row += perNode[m];
    }
    transport.sendRecv(sendSegs, recvSegs);
  }

  @Override
  void reduceAtHome(DispatchHandle handle, RowBuffer partials, RowBuffer out) {
    DispatchLayout layout = handle.layout();
    int[] at = layout.destPosition();
    if (nodes == 1) {
      tokenSums.clear();
      for (int t = 0; t < layout.tokens; t++) {
        for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) tokenSums.term(at[q], 1f);
        tokenSums.endOutput(); // a token routed nowhere: no terms, zeros
      }
      tokenSums.run(partials, false, out, 0, false);
      return;
    }
    nodeTokenSums.clear();
    if (!handle.nodeRelay()) {
      for (int t = 0; t < layout.tokens; t++) {
        nodeGroups(nodeTokenSums, layout, t, localRanks, q -> at[q]);
        nodeTokenSums.endOutput();
      }
    } else {
      // node m's partial of token t: computed here for the own node, else received (row
      // receivedAt + the rows of lower remote nodes + t's index among the tokens sent to m)
      int node = rank / localRanks;
      int[] perNode = layout.tokensToNode(localRanks);
      int[] next = new int[nodes];
      for (int m = 0, row = receivedAt; m < nodes; m++) {
        if (m == node) continue;
        next[m] = row;
        row += perNode[m];
      }
      for (int t = 0; t < layout.tokens; t++) {
        int prev = -1;
        for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) {
          int m = layout.pairRank[q] / localRanks;
          if (m == node) {
            if (prev != m && prev >= 0) nodeTokenSums.endGroup();
            nodeTokenSums.term(at[q], 1f);
          } else if (m != prev) {
            if (prev >= 0) nodeTokenSums.endGroup();
            nodeTokenSums.term(next[m]++, 1f);
          }
          prev = m;
        }
        if (prev >= 0) nodeTokenSums.endGroup();
        nodeTokenSums.endOutput();
      }
    }
    nodeTokenSums.run(partials, true, out, 0, false);
  }
}
