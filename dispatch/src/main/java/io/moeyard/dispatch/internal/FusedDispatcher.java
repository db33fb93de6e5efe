package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.MemorySegment;

/**
 * FUSCO-style fused dispatch: each token row is stored straight from {@code x} into its final
 * expert-major row(s) in the destination's receive buffer, once per local slot that needs it; no
 * permute pass before, no sort pass after. Rows go out in chunks, round-robin over rotated peers.
 *
 * <p>On the CPU the stores are issued in destination order (slot by slot, tokens in order), so
 * each sender writes long sequential runs instead of scattering one row into each of a token's
 * slots: the same stores run faster in destination order ({@code CopyKernelsBenchmark}; figures in
 * bench/results/cpu-2026-11-26.md), because a CPU pays for scattered stores (read-for-ownership, TLB) and not
 * for re-reading a source row that is still in its cache. The GPU kernels, whose cost is the
 * other way round, read each row once and store it everywhere. The stores themselves go through
 * {@link RowCopy}, which streams them past the cache where the host helper is available.
 *
 * <p>On more than one node, built with a {@link RelaySize}, it takes the node-level path: rows for
 * another node cross once per token, packed into one message for the rank with this rank's local
 * index there ({@code DispatchRelay}, sent with {@link Transport#sendRecv}), and that relay makes
 * the stores this rank would have made into its node's windows; stores within the own node stay
 * direct. The windows come out entry for entry as on the single-hop path.
 */
public final class FusedDispatcher extends Dispatcher {
  private long[] srcOff = new long[0];
  private long[] dstOff = new long[0];
  /** Views of {@link #srcOff} and {@link #dstOff} for the copy helper, made with them. */
  private MemorySegment srcOffView = MemorySegment.ofArray(srcOff);
  private MemorySegment dstOffView = MemorySegment.ofArray(dstOff);
  private final int localRanks;
  /** The node-crossing buffers, or null: every row goes direct (one node, or built without them). */
  private final DispatchRelay relay;
  private final DispatchLayout[] relayed;
  private final int[] nodePairs;
  private final int[] nodeRows;

  public FusedDispatcher(Transport transport, ExpertMap map) {
    this(transport, map, DispatchOptions.defaults());
  }

  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options) {
    super(transport, map, options);
    this.localRanks = transport.topology().localRanks();
    this.relay = null;
    this.relayed = null;
    this.nodePairs = null;
    this.nodeRows = null;
  }

  /**
   * A dispatcher whose window metadata live in {@code memory}, sized for {@code capacityRows}
   * received rows: what a communicator builds (and what a process transport needs).
   */
  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options, PeerMemory memory, int capacityRows) {
    this(transport, map, options, memory, capacityRows, null);
  }

  /**
   * As {@link #FusedDispatcher(Transport, ExpertMap, DispatchOptions, PeerMemory, int)}, taking the
   * node-level path when {@code relay} is given and the world has more than one node: every row
   * crosses to each remote node once, to the rank with this rank's local index there, which
   * stores it into its node's windows (see data-path.md). The relay buffers come from {@code
   * memory} ({@link #relayBytes}).
   */
  public FusedDispatcher(Transport transport, ExpertMap map, DispatchOptions options, PeerMemory memory, int capacityRows,
      RelaySize relay) {
    super(transport, map, options, java.util.Objects.requireNonNull(memory, "memory"), capacityRows);
    this.localRanks = transport.topology().localRanks();
    boolean on = relay != null && transport.topology().nodes() > 1;
    this.relay = on ? new DispatchRelay(memory, transport.topology(), rank, relay.maxTokens(), relay.topk(),
        relay.hidden(), relay.dtype()) : null;
    this.relayed = on ? new DispatchLayout[ranks] : null;
    this.nodePairs = on ? new int[ranks] : null;
    this.nodeRows = on ? new int[ranks] : null;
    Machines.require(transport, "the fused single-hop dispatch", !on);
  }

  /** What the node relay's buffers are sized for: most tokens per rank and call, top-k, row format. */
  public record RelaySize(int maxTokens, int topk, int hidden, DType dtype) {}

  /**
   * Peer memory the node relay carves on one rank of {@code topology} (nothing on one node):
   * {@code 2 x (nodes - 1)} message slots of {@code align64(8 x maxTokens x topk) + maxTokens x
   * (row bytes + FP8 scale bytes)}, the worst case of one message per remote node each way.
   */
  public static long relayBytes(io.moeyard.engine.Topology topology, RelaySize size) {
    if (size == null || topology.nodes() == 1) return 0;
    return DispatchRelay.peerMemoryBytes(topology, size.maxTokens(), size.topk(), size.hidden(), size.dtype());
  }

  @Override
  RowBuffer staging(int receivedRows, int hidden, DType dtype) {
    return null;
  }

  @Override
  void move(RowBuffer x, Routing routing, DispatchLayout layout, Announcement[] all, int[][] counts,
      ReceiveWindow[] windows) {
    SendPlan plan = new SendPlan(rank, all, counts);
    if (relay == null) {
      // pair descriptors first, then rows with their metadata, each destination's in receive order
      sendAllPairs(false, routing, layout, plan, windows, layout.pairsTo);
      storeRows(plan, x, null, routing.topkWeights(), layout, windows, layout.selectionsTo);
      return;
    }
    // every other node through its relay, the own node straight from x. The messages go first:
    // packing is short, so the ranks meet in the exchange about together, right after the
    // windows' all-gather, and the stores (own rows, then relayed ones) then run without a
    // rendezvous between them to wait out the ranks' imbalance
    int node = rank / localRanks;
    relay.pack(x, routing, layout, all[rank].tokensToNode());
    relay.expect(all);
    transport.sendRecv(relay.send, relay.recv);
    sendAllPairs(false, routing, layout, plan, windows, onNode(layout.pairsTo, node, nodePairs));
    storeRows(plan, x, null, routing.topkWeights(), layout, windows, onNode(layout.selectionsTo, node, nodeRows));
    java.util.Arrays.fill(relayed, null);
    for (int m = 0; m < transport.topology().nodes(); m++) {
      int source = relay.relayOn(m);
      if (m == node || relay.recv[source] == null) continue;
      // the source's own stores, restricted to this node, reading its rows from the message
      Announcement a = all[source];
      Routing r = relay.routing(source, a.tokens());
      DispatchLayout l = DispatchLayout.compute(source, map, r);
      relayed[source] = l;
      int[] rowOf = messageRows(l, node);
      RowBuffer rows = relay.rows(source, a.tokens(), a.tokensToNode()[node]);
      SendPlan p = new SendPlan(source, all, counts);
      sendAllPairs(false, r, l, p, windows, onNode(l.pairsTo, node, nodePairs));
      storeRows(p, rows, rowOf, r.topkWeights(), l, windows, onNode(l.selectionsTo, node, nodeRows));
    }
  }

  /** {@code perRank} with every rank off {@code node} zeroed, into {@code into}. */
  private int[] onNode(int[] perRank, int node, int[] into) {
    java.util.Arrays.fill(into, 0);
    System.arraycopy(perRank, node * localRanks, into, node * localRanks, localRanks);
    return into;
  }

  /** Per token of {@code l}'s source, its row in the message to {@code node} (-1: not carried there). */
  private int[] messageRows(DispatchLayout l, int node) {
    int[] rowOf = new int[l.tokens];
    int n = 0;
    for (int t = 0; t < l.tokens; t++) {
      rowOf[t] = -1;
      for (int q = l.pairOffset[t]; q < l.pairOffset[t + 1]; q++) {
        if (l.pairRank[q] / localRanks == node) {
          rowOf[t] = n++;
          break;
        }
      }
    }
    return rowOf;
  }

  @Override
  int relayTokens() {
    return relay == null ? -1 : relay.maxTokens;
  }

  @Override
  DispatchLayout[] relayedLayouts() {
    return relay == null ? null : relayed.clone();
  }

  @Override
  String extraProblem(RowBuffer x, Routing routing) {
    if (relay == null) return null;
    if (x.hidden() != relay.hidden || x.dtype() != relay.dtype || routing.topk() != relay.topk) {
      return "rank " + rank + ": x is " + x.hidden() + " x " + x.dtype().cliName() + " top-" + routing.topk()
          + ", the node relay was built for " + relay.hidden + " x " + relay.dtype.cliName() + " top-" + relay.topk;
    }
    if (routing.tokens() > relay.maxTokens) {
      return "rank " + rank + ": routing has " + routing.tokens() + " tokens, the node relay holds " + relay.maxTokens;
    }
    return null;
  }

  /**
   * Stores the rows of {@code plan}'s source, with their metadata, into the destinations with a
   * non-zero {@code selectionsTo}, each destination's in receive order. Rows come from {@code
   * src}: token t's row is row t ({@code rowOf == null}) or row {@code rowOf[t]} (a relayed
   * message).
   */
  private void storeRows(SendPlan plan, RowBuffer src, int[] rowOf, float[] weights, DispatchLayout layout,
      ReceiveWindow[] windows, int[] selectionsTo) {
    int[] slotStart = layout.slotPermutedStart();
    int[] permSel = layout.permutedSelection();
    int[] sortedSlot = layout.sortedSlot;
    int topk = layout.topk;
    int[] sortedK = layout.sortedK;
    long rowBytes = src.rowBytes();
    int scalesPerRow = src.scalesPerRow();
    long scaleBytes = (long) scalesPerRow * Float.BYTES;
    int chunk = options.chunkPairs();
    if (srcOff.length < chunk) {
      srcOff = new long[chunk];
      dstOff = new long[chunk];
      srcOffView = MemorySegment.ofArray(srcOff);
      dstOffView = MemorySegment.ofArray(dstOff);
    }
    MemorySegment srcOffs = srcOffView;
    MemorySegment dstOffs = dstOffView;
    int source = plan.source;
    ChunkSchedule.forEachChunk(rank, selectionsTo, chunk, (d, from, to) -> {
      ReceiveWindow w = windows[d];
      RowBuffer dst = w.rows;
      int base = slotStart[d * slotsPerRank];
      int n = 0;
      for (int i = base + from, end = base + to; i < end; i++) {
        int sel = permSel[i];
        int t = sel / topk;
        int row = rowOf == null ? t : rowOf[t];
        int slot = sortedSlot[sel];
        int pos = plan.slotStart[slot] + (i - slotStart[slot]);
        w.weights.setAtIndex(ReceiveWindow.FLOAT, pos, weights[sel - sel % topk + sortedK[sel]]);
        w.rowSrcRank.setAtIndex(ReceiveWindow.INT, pos, source);
        w.rowSrcToken.setAtIndex(ReceiveWindow.INT, pos, t);
        srcOff[n] = src.rowOffset(row);
        dstOff[n++] = dst.rowOffset(pos);
        if (scalesPerRow > 0) {
          MemorySegment.copy(src.scales(), row * scaleBytes, dst.scales(), pos * scaleBytes, scaleBytes);
        }
      }
      RowCopy.copyRows(src.segment(), srcOff, srcOffs, dst.segment(), dstOff, dstOffs, n, rowBytes);
    });
  }

  @Override
  void finish(ReceiveWindow window, int[][] counts, int[] slotOffsets) {}
}
