package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Agreement;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.util.Objects;

/**
 * The dispatch collective on one rank. Every rank of the world calls {@link #dispatch} with its
 * own tokens; each returns a {@link DispatchHandle} with the rows routed to its local slots in
 * the FUSCO expert-major layout. Two implementations move the same bytes to the same places:
 * {@link FusedDispatcher} (one pass, straight into place) and {@link UnfusedDispatcher}
 * (Megatron's permute / all-to-all-v / sort-chunks, the baseline).
 *
 * <p>The protocol, shared by both: (1) every rank validates its input, resolves its layout and
 * announces its counts; after the all-gather every rank checks every announcement, so bad input
 * anywhere fails every rank with the same message before any buffer is touched; (2) receivers
 * publish their windows; (3) senders move rows and metadata into the windows (on the fused
 * node-level path, rows for other nodes first cross to each node's relay, which stores them);
 * (4) a barrier, then receivers finish (the unfused path sorts its chunks here).
 *
 * <p>A dispatcher instance belongs to one rank and is not thread-safe; it keeps scratch buffers
 * between calls so that steady-state calls allocate only the handle's receive buffer (pass one
 * in to avoid that too).
 */
public abstract sealed class Dispatcher implements AutoCloseable permits FusedDispatcher, UnfusedDispatcher {
  protected final Transport transport;
  protected final ExpertMap map;
  protected final DispatchOptions options;
  protected final int rank;
  protected final int ranks;
  protected final int slotsPerRank;
  /** Where windows live when built for a communicator (null: per-dispatch memory, ranks of one JVM only). */
  protected final PeerMemory memory;
  /** Rows the window metadata in {@link #memory} hold (0 without it). */
  protected final int capacityRows;
  private final ReceiveWindow.Metadata meta;

  Dispatcher(Transport transport, ExpertMap map, DispatchOptions options) {
    this(transport, map, options, null, 0);
  }

  Dispatcher(Transport transport, ExpertMap map, DispatchOptions options, PeerMemory memory, int capacityRows) {
    this.transport = Objects.requireNonNull(transport, "transport");
    this.map = Objects.requireNonNull(map, "map");
    this.options = Objects.requireNonNull(options, "options");
    if (map.ranks() != transport.size()) {
      throw new IllegalArgumentException("expert map is for " + map.ranks() + " ranks, the world has " + transport.size());
    }
    this.rank = transport.rank();
    this.ranks = transport.size();
    this.slotsPerRank = map.slotsPerRank();
    this.rowCursor = new int[ranks];
    if (capacityRows < 0) throw new IllegalArgumentException("capacityRows must be >= 0, got " + capacityRows);
    this.memory = memory;
    this.capacityRows = memory == null ? 0 : capacityRows;
    this.meta = memory == null ? null : ReceiveWindow.Metadata.in(memory, capacityRows);
  }

  /**
   * Bytes of peer memory a dispatcher built with {@code capacityRows} carves: the window
   * metadata, and for the unfused path its staging rows.
   */
  public static long peerMemoryBytes(boolean fused, int capacityRows, int hidden, DType dtype) {
    long b = ReceiveWindow.Metadata.bytes(capacityRows);
    if (!fused) b += PeerMemory.rowsBytes(capacityRows, hidden, dtype);
    return b;
  }

  public ExpertMap expertMap() {
    return map;
  }

  /** Dispatches {@code x} (one row per token) by {@code routing}; allocates the receive buffer. */
  public DispatchHandle dispatch(RowBuffer x, Routing routing) {
    return dispatch(x, routing, null);
  }

  /**
   * Dispatches into {@code receiveInto} (reused across calls; must hold at least the rows this
   * rank receives, else every rank fails naming the capacity). Pass null to have the handle
   * allocate and own the receive buffer.
   */
  public DispatchHandle dispatch(RowBuffer x, Routing routing, RowBuffer receiveInto) {
    return dispatch(x, routing, receiveInto, null);
  }

  /**
   * As {@link #dispatch(RowBuffer, Routing, RowBuffer)}, with a problem the caller found on this
   * rank (null if none): it is announced like any other, so every rank fails with it before any
   * buffer is written. How a communicator's own checks (sizes it was built for, a closed
   * communicator) reach every rank.
   */
  public DispatchHandle dispatch(RowBuffer x, Routing routing, RowBuffer receiveInto, String callerProblem) {
    String problem = callerProblem != null ? callerProblem
        : x == null ? "rank " + rank + ": x is null"
        : routing == null ? "rank " + rank + ": routing is null"
        : closed ? "rank " + rank + ": the dispatcher is closed"
        : localProblem(x, routing, receiveInto);
    DispatchLayout layout = problem == null ? DispatchLayout.compute(rank, map, routing) : null;
    long capacity = receiveInto == null ? -1 : receiveInto.rows();
    if (memory != null) capacity = capacity < 0 ? capacityRows : Math.min(capacity, capacityRows);
    Announcement mine = layout == null
        ? new Announcement(problem, x == null ? 0 : x.hidden(), x == null ? null : x.dtype(), null, null, null, -1,
            relayTokens(), 0, null)
        : new Announcement(null, x.hidden(), x.dtype(), layout.sendCounts, layout.pairsTo, layout.selectionsTo, capacity,
            relayTokens(), layout.tokens, relayTokens() < 0 ? null : layout.tokensToNode(transport.topology().localRanks()));
    Announcement[] all = gather(mine);
    String worldProblem = worldProblem(all, transport.topology().localRanks());
    if (worldProblem != null) throw new CollectiveException("dispatch: " + worldProblem);
    try {
      return run(x, routing, receiveInto, layout, all);
    } catch (CollectiveException e) {
      throw e;
    } catch (RuntimeException | Error e) {
      transport.abort(e);
      throw e;
    }
  }

  private Announcement[] gather(Announcement mine) {
    Object[] got = transport.allGather(mine, Announcement.CODEC);
    Announcement[] all = new Announcement[got.length];
    for (int r = 0; r < got.length; r++) all[r] = (Announcement) got[r];
    return all;
  }

  private String localProblem(RowBuffer x, Routing routing, RowBuffer receiveInto) {
    String p = routing.problem(map.experts());
    if (p != null) return "rank " + rank + ": " + p;
    if (x.rows() != routing.tokens()) {
      return "rank " + rank + ": x has " + x.rows() + " rows but routing has " + routing.tokens() + " tokens";
    }
    if (!transport.sharesAddressSpace()) {
      if (memory == null) {
        return "rank " + rank + ": a dispatcher on a process transport needs peer memory (build it with one, as Communicator does)";
      }
      if (receiveInto == null) return "rank " + rank + ": a dispatch on a process transport needs a receive buffer in peer memory";
      if (!transport.reachable(receiveInto.segment()) || (receiveInto.scales() != null && !transport.reachable(receiveInto.scales()))) {
        return "rank " + rank + ": the receive buffer is not in memory peers can reach (carve it from the transport's peer memory)";
      }
    }
    if (receiveInto != null) {
      if (receiveInto.hidden() != x.hidden() || receiveInto.dtype() != x.dtype()) {
        return "rank " + rank + ": receive buffer is " + receiveInto.hidden() + " x " + receiveInto.dtype().cliName()
            + " but x is " + x.hidden() + " x " + x.dtype().cliName();
      }
    }
    return extraProblem(x, routing);
  }

  /** A problem of this rank's input that only the subclass knows of, or null. */
  String extraProblem(RowBuffer x, Routing routing) {
    return null;
  }

  /** The same verdict on every rank, since every rank sees the same announcements. */
  private static String worldProblem(Announcement[] all, int localRanks) {
    String agreed = Agreement.check(all.length, r -> all[r].problem(), r -> all[r].hidden(), r -> all[r].dtype());
    if (agreed != null) return agreed;
    for (int r = 1; r < all.length; r++) {
      if ((all[r].relayTokens() < 0) != (all[0].relayTokens() < 0)) {
        return "ranks disagree on the node path: rank 0 " + (all[0].relayTokens() < 0 ? "sends direct" : "relays")
            + ", rank " + r + (all[r].relayTokens() < 0 ? " sends direct" : " relays");
      }
    }
    if (all[0].relayTokens() >= 0) {
      // a relay holds one message per remote source of its local index, sized for so many tokens
      for (int s = 0; s < all.length; s++) {
        for (int r = s % localRanks; r < all.length; r += localRanks) {
          if (r / localRanks != s / localRanks && all[s].tokens() > all[r].relayTokens()) {
            return "rank " + s + " dispatches " + all[s].tokens() + " tokens, the node relay on rank " + r
                + " holds " + all[r].relayTokens();
          }
        }
      }
    }
    for (int d = 0; d < all.length; d++) {
      if (all[d].capacityRows() < 0) continue;
      long need = 0;
      for (Announcement a : all) need += a.selectionsTo()[d];
      if (need > all[d].capacityRows()) {
        return "rank " + d + ": receive buffer holds " + all[d].capacityRows() + " rows, this dispatch sends it " + need;
      }
    }
    return null;
  }

  private DispatchHandle run(RowBuffer x, Routing routing, RowBuffer receiveInto, DispatchLayout layout, Announcement[] all) {
    int[][] counts = new int[ranks][];
    for (int r = 0; r < ranks; r++) counts[r] = all[r].sendCounts();
    int self0 = rank * slotsPerRank;
    // receiving side: slot offsets, pairs per source
    int[] slotOffsets = new int[slotsPerRank + 1];
    for (int e = 0; e < slotsPerRank; e++) {
      int tot = 0;
      for (int r = 0; r < ranks; r++) tot += counts[r][self0 + e];
      slotOffsets[e + 1] = slotOffsets[e] + tot;
    }
    int receivedRows = slotOffsets[slotsPerRank];
    int[] sourcePairStart = new int[ranks + 1];
    for (int r = 0; r < ranks; r++) sourcePairStart[r + 1] = sourcePairStart[r] + all[r].pairsTo()[rank];
    Arena arena = null;
    RowBuffer rows = receiveInto;
    if (rows == null) {
      arena = Arena.ofShared();
      rows = RowBuffer.allocate(arena, receivedRows, x.hidden(), x.dtype());
    }
    ReceiveWindow window;
    try {
      ReceiveWindow.Metadata m = meta != null ? meta : ReceiveWindow.Metadata.collected(receivedRows);
      window = new ReceiveWindow(rows, staging(receivedRows, x.hidden(), x.dtype()), m, receivedRows, sourcePairStart[ranks]);
      Object[] got = transport.allGather(window, ReceiveWindow.CODEC);
      ReceiveWindow[] windows = new ReceiveWindow[ranks];
      for (int r = 0; r < ranks; r++) windows[r] = (ReceiveWindow) got[r];
      move(x, routing, layout, all, counts, windows);
      transport.barrier();
      finish(window, counts, slotOffsets);
    } catch (RuntimeException | Error e) {
      if (arena != null) arena.close();
      throw e;
    }
    return new DispatchHandle(transport, map, layout, routing.topkWeights().clone(), rows, receivedRows, slotOffsets,
        window, sourcePairStart[ranks], counts, sourcePairStart, relayedLayouts(), arena);
  }

  private boolean closed;

  /**
   * Frees this dispatcher's scratch. Call it on every rank after the last collective that uses it
   * (a peer's window may point into this rank's scratch until then); later calls fail on every
   * rank, naming this one.
   */
  @Override
  public void close() {
    if (!closed) {
      closed = true;
      freeScratch();
    }
  }

  /** Releases what the subclass allocated. */
  void freeScratch() {}

  /** The unfused path's all-to-all target on this rank, or null. */
  abstract RowBuffer staging(int receivedRows, int hidden, DType dtype);

  /** Moves this rank's rows and their metadata into every destination's window. */
  abstract void move(RowBuffer x, Routing routing, DispatchLayout layout, Announcement[] all, int[][] counts,
      ReceiveWindow[] windows);

  /**
   * Tokens per source the node relay holds, or -1 when this dispatcher sends every row direct
   * (one node, the unfused path, or a dispatcher built without relay buffers).
   */
  int relayTokens() {
    return -1;
  }

  /** The layouts of the sources whose rows this rank relayed in the last dispatch (by rank, null elsewhere), or null. */
  DispatchLayout[] relayedLayouts() {
    return null;
  }

  /** Runs after every sender is done: the last local step on the receiving side. */
  abstract void finish(ReceiveWindow window, int[][] counts, int[] slotOffsets);

  /**
   * Where the rows and pairs of source rank {@code source} start in every destination's window,
   * from the announced counts: the FUSCO position of the j-th token the source sends for physical
   * slot p is {@code slotStart[p] + j}, with slotStart = sum of the slot's rows below p's local
   * slot plus the rows of lower source ranks in that slot. A node relay builds the plan of the
   * source it relays for, so its stores land where the source's own would.
   */
  final class SendPlan {
    final int source;
    final int[] slotStart;
    final int[] pairBase;
    final int[] rowBase;

    SendPlan(int source, Announcement[] all, int[][] counts) {
      this.source = source;
      int spr = slotsPerRank;
      slotStart = new int[ranks * spr];
      pairBase = new int[ranks];
      rowBase = new int[ranks];
      for (int d = 0; d < ranks; d++) {
        int base = 0;
        for (int e = 0; e < spr; e++) {
          int p = d * spr + e;
          int below = 0;
          int tot = 0;
          for (int r = 0; r < ranks; r++) {
            if (r < source) below += counts[r][p];
            tot += counts[r][p];
          }
          slotStart[p] = base + below;
          base += tot;
        }
        for (int r = 0; r < source; r++) {
          pairBase[d] += all[r].pairsTo()[d];
          rowBase[d] += all[r].selectionsTo()[d];
        }
      }
    }
  }

  /** Next FUSCO position per physical slot, and rows written per destination, during {@link #sendPairs}. */
  private int[] nextPos = new int[0];
  private final int[] rowCursor;

  /**
   * Writes the pair descriptors of {@code plan}'s source for the destinations with a non-zero
   * {@code pairsTo} (the source's own counts, or a node's share of them), chunked over rotated
   * peers ({@link #sendPairs} per chunk); both dispatchers start their move with it.
   */
  final void sendAllPairs(boolean rowMetadata, Routing routing, DispatchLayout layout, SendPlan plan, ReceiveWindow[] windows,
      int[] pairsTo) {
    if (nextPos.length != plan.slotStart.length) nextPos = new int[plan.slotStart.length];
    System.arraycopy(plan.slotStart, 0, nextPos, 0, nextPos.length);
    java.util.Arrays.fill(rowCursor, 0);
    ChunkSchedule.forEachChunk(rank, pairsTo, options.chunkPairs(),
        (d, from, to) -> sendPairs(d, from, to, rowMetadata, routing, layout, plan, windows[d]));
  }

  /**
   * Writes the descriptors of the plan's source's pairs {@code [from, to)} into {@code d}'s window: each
   * pair's source, home index and rows (positions from the FUSCO formula, via {@code nextPos}),
   * and, when {@code rowMetadata}, each row's weight and source. Rows themselves are moved by the
   * subclass.
   */
  private void sendPairs(
      int d, int from, int to, boolean rowMetadata, Routing routing, DispatchLayout layout, SendPlan plan,
      ReceiveWindow w) {
    int[] destPairs = layout.destPairs;
    int dBase = layout.destPairStart[d];
    float[] weights = routing.topkWeights();
    int topk = layout.topk;
    for (int i = from; i < to; i++) {
      int q = destPairs[dBase + i];
      int t = layout.pairToken[q];
      int wp = plan.pairBase[d] + i;
      w.pairSrcRank.setAtIndex(ReceiveWindow.INT, wp, plan.source);
      w.pairHomeIndex.setAtIndex(ReceiveWindow.INT, wp, q);
      w.pairRowStart.setAtIndex(ReceiveWindow.INT, wp, plan.rowBase[d] + rowCursor[d]);
      for (int sel = layout.pairSel[q], end = layout.pairSelEnd[q]; sel < end; sel++) {
        int pos = nextPos[layout.sortedSlot[sel]]++;
        w.pairRows.setAtIndex(ReceiveWindow.INT, plan.rowBase[d] + rowCursor[d]++, pos);
        if (rowMetadata) {
          w.weights.setAtIndex(ReceiveWindow.FLOAT, pos, weights[t * topk + layout.sortedK[sel]]);
          w.rowSrcRank.setAtIndex(ReceiveWindow.INT, pos, plan.source);
          w.rowSrcToken.setAtIndex(ReceiveWindow.INT, pos, t);
        }
      }
    }
  }
}
