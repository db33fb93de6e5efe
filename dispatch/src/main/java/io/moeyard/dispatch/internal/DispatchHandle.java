package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The result of one dispatch on one rank, and everything combine needs to reverse it.
 *
 * <p>As an expert rank: {@link #received()} holds the rows routed to this rank's local slots,
 * expert-major (all rows of local slot 0, then slot 1, ...; within a slot by source rank, then
 * source token), {@link #slotCounts()} how many each slot got, {@link #receivedWeights()} the
 * top-k weight of each row's selection and {@link #rowSourceRank}/{@link #rowSourceToken} where
 * each row came from. As a home rank: the layout of its own tokens ({@link #layout()}).
 *
 * <p>The row metadata live in the dispatcher's window memory: a dispatcher built with peer memory
 * (as a communicator builds it) reuses them, so its handle is valid until its next dispatch.
 *
 * <p>Closing the handle frees the receive buffer if dispatch allocated it (not one the caller
 * passed in). Combine must be called before close.
 */
public final class DispatchHandle implements AutoCloseable {
  private final Transport transport;
  private final ExpertMap map;
  private final DispatchLayout layout;
  private final float[] homeWeights;
  private final RowBuffer received;
  private final int receivedRows;
  private final int[] slotOffsets;
  private final MemorySegment receivedWeights;
  private final MemorySegment rowSourceRank;
  private final MemorySegment rowSourceToken;
  private final MemorySegment pairSourceRank;
  private final MemorySegment pairHomeIndex;
  private final MemorySegment pairRowStart;
  private final MemorySegment pairRows;
  private final int receivedPairs;
  private final int[][] worldSendCounts;
  private final int[] sourcePairStart;
  private final DispatchLayout[] relayed;
  private final Arena arena;
  private boolean closed;

  DispatchHandle(
      Transport transport,
      ExpertMap map,
      DispatchLayout layout,
      float[] homeWeights,
      RowBuffer received,
      int receivedRows,
      int[] slotOffsets,
      ReceiveWindow window,
      int receivedPairs,
      int[][] worldSendCounts,
      int[] sourcePairStart,
      DispatchLayout[] relayed,
      Arena arena) {
    this.transport = transport;
    this.map = map;
    this.layout = layout;
    this.homeWeights = homeWeights;
    this.received = received;
    this.receivedRows = receivedRows;
    this.slotOffsets = slotOffsets;
    this.receivedWeights = window.weights;
    this.rowSourceRank = window.rowSrcRank;
    this.rowSourceToken = window.rowSrcToken;
    this.pairSourceRank = window.pairSrcRank;
    this.pairHomeIndex = window.pairHomeIndex;
    this.pairRowStart = window.pairRowStart;
    this.pairRows = window.pairRows;
    this.receivedPairs = receivedPairs;
    this.worldSendCounts = worldSendCounts;
    this.sourcePairStart = sourcePairStart;
    this.relayed = relayed;
    this.arena = arena;
  }

  public Transport transport() {
    return transport;
  }

  public ExpertMap expertMap() {
    return map;
  }

  /** This rank's own tokens resolved to slots and pairs (the home side of the dispatch). */
  public DispatchLayout layout() {
    return layout;
  }

  /**
   * True when this dispatch took the node-level path (more than one node, rows crossing to each
   * remote node once through its relay): combine then returns along the same path.
   */
  public boolean nodeRelay() {
    return relayed != null;
  }

  /**
   * As a node relay: the layout of {@code source}'s tokens, recomputed from the routing it sent
   * here, when this rank relayed that source's rows to its node; null otherwise.
   */
  public DispatchLayout relayedLayout(int source) {
    return relayed == null ? null : relayed[source];
  }

  /**
   * Rows this rank sent across a node boundary in this dispatch, on the path it took: one per
   * (token, remote node) with a pair there when relayed, else one per token-rank pair with a rank
   * on another node.
   */
  public int rowsSentAcrossNodes() {
    int localRanks = transport.topology().localRanks();
    int node = transport.rank() / localRanks;
    int n = 0;
    if (relayed != null) {
      int[] perNode = layout.tokensToNode(localRanks);
      for (int m = 0; m < perNode.length; m++) if (m != node) n += perNode[m];
    } else {
      for (int d = 0; d < layout.ranks; d++) if (d / localRanks != node) n += layout.pairsTo[d];
    }
    return n;
  }

  /** The top-k weights this rank dispatched with ({@code [tokens * topk]}, a copy taken at dispatch). */
  public float[] homeWeights() {
    return homeWeights;
  }

  /** The receive buffer; its first {@link #receivedRows()} rows are valid. */
  public RowBuffer received() {
    checkOpen();
    return received;
  }

  /** Rows received in total (one per selection routed to this rank). */
  public int receivedRows() {
    return receivedRows;
  }

  /** Rows received per local slot. */
  public int[] slotCounts() {
    int[] c = new int[slotOffsets.length - 1];
    for (int e = 0; e < c.length; e++) c[e] = slotOffsets[e + 1] - slotOffsets[e];
    return c;
  }

  /** First row of local slot {@code e} in {@link #received()}; {@code slotOffset(S)} = rows. */
  public int slotOffset(int e) {
    return slotOffsets[e];
  }

  /** Top-k weight of the selection behind each received row ({@code [receivedRows]}, a copy). */
  public float[] receivedWeights() {
    return receivedWeights.toArray(ValueLayout.JAVA_FLOAT);
  }

  /** Top-k weight of the selection behind received row {@code row}. */
  public float receivedWeight(int row) {
    return receivedWeights.getAtIndex(ValueLayout.JAVA_FLOAT, row);
  }

  public int rowSourceRank(int row) {
    return rowSourceRank.getAtIndex(ValueLayout.JAVA_INT, row);
  }

  public int rowSourceToken(int row) {
    return rowSourceToken.getAtIndex(ValueLayout.JAVA_INT, row);
  }

  /** Token-rank pairs received (rows that crossed the wire, one per source token). */
  public int receivedPairs() {
    return receivedPairs;
  }

  /** Source rank of received pair {@code q}; pairs are ordered by source rank, then token. */
  public int pairSourceRank(int q) {
    return pairSourceRank.getAtIndex(ValueLayout.JAVA_INT, q);
  }

  /** The index of received pair {@code q} among its home rank's pairs. */
  public int pairHomeIndex(int q) {
    return pairHomeIndex.getAtIndex(ValueLayout.JAVA_INT, q);
  }

  /** Received pair q owns rows {@code pairRows[pairRowStart[q] .. pairRowStart[q+1])}, ascending local slot. */
  public int pairRowStart(int q) {
    return pairRowStart.getAtIndex(ValueLayout.JAVA_INT, q);
  }

  public int pairRow(int i) {
    return pairRows.getAtIndex(ValueLayout.JAVA_INT, i);
  }

  /** Received pairs from {@code source} are {@code [sourcePairStart(source), sourcePairStart(source + 1))}. */
  public int sourcePairStart(int source) {
    return sourcePairStart[source];
  }

  /** {@code [source rank][physical slot]}: N[r][d][e] of the whole world, as announced at dispatch. */
  public int[][] worldSendCounts() {
    return worldSendCounts;
  }

  /** Received rows of local slot {@code e} that came from {@code source} (N[source][self][e]). */
  public int countFrom(int source, int e) {
    return worldSendCounts[source][transport.rank() * map.slotsPerRank() + e];
  }

  /** Rows of local slot e from sources below {@code source}: where source's rows start inside the slot. */
  public int sourceOffsetInSlot(int source, int e) {
    int s = 0;
    for (int r = 0; r < source; r++) s += countFrom(r, e);
    return s;
  }

  public boolean isOpen() {
    return !closed;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("dispatch handle is closed");
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      if (arena != null) arena.close();
    }
  }

}
