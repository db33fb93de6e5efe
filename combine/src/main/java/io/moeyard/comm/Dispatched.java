package io.moeyard.comm;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.engine.RowBuffer;

/**
 * The result of one {@link Communicator#dispatch} on one rank, as the experts see it; what
 * combine needs to reverse it stays inside. Valid until the communicator's next dispatch or its
 * close: the rows live in the communicator's receive buffer, which every dispatch reuses (pass a
 * buffer of your own to {@code dispatch(x, routing, into)} to keep rows longer).
 *
 * <p>{@link #received()} holds the rows routed to this rank's local slots, expert-major: all rows
 * of local slot 0, then slot 1, ...; within a slot by source rank, then source token. The expert
 * outputs handed to combine use the same row order.
 */
public final class Dispatched {
  final Communicator owner;
  final long generation;
  /** The cpu backend's result; null for other backends. */
  final DispatchHandle handle;
  /** Another backend's result; null on the cpu backend. */
  private final Rows rows;
  private final int slots;

  Dispatched(Communicator owner, long generation, DispatchHandle handle) {
    this.owner = owner;
    this.generation = generation;
    this.handle = handle;
    this.rows = null;
    this.slots = handle.expertMap().slotsPerRank();
  }

  private Dispatched(Communicator owner, Rows rows) {
    this.owner = owner;
    this.generation = 0;
    this.handle = null;
    this.rows = rows;
    this.slots = rows.slots();
  }

  /**
   * What a backend outside this package (the {@code cuda} one) answers for its dispatch result; its
   * implementation also carries whatever that backend's combine needs. Not for engines.
   */
  public interface Rows {
    RowBuffer received();

    int receivedRows();

    int slots();

    int slotOffset(int e);

    float receivedWeight(int row);

    int rowSourceRank(int row);

    int rowSourceToken(int row);

    int receivedPairs();

    int tokens();

    /** Rows this rank sent across a node boundary, or -1 when the backend does not count them. */
    default int rowsSentAcrossNodes() {
      return -1;
    }
  }

  /** A result of another backend's communicator {@code owner}; for backends, not engines. */
  public static Dispatched of(Communicator owner, Rows rows) {
    return new Dispatched(java.util.Objects.requireNonNull(owner, "owner"), java.util.Objects.requireNonNull(rows, "rows"));
  }

  /**
   * The backend's {@link Rows} when {@code c} made this result through {@link #of}, else null (a
   * result of another communicator): how a backend recognises its own results.
   */
  public Rows rowsOf(Communicator c) {
    return c == owner ? rows : null;
  }

  /** The receive buffer; rows {@code [0, receivedRows())} hold this dispatch's rows. */
  public RowBuffer received() {
    return rows != null ? rows.received() : handle.received();
  }

  /** Rows received (one per selection routed to one of this rank's slots). */
  public int receivedRows() {
    return rows != null ? rows.receivedRows() : handle.receivedRows();
  }

  /** Local slots of this rank (experts' physical copies it holds). */
  public int slots() {
    return slots;
  }

  /** First row of local slot {@code e}; {@code slotOffset(slots())} = {@link #receivedRows()}. */
  public int slotOffset(int e) {
    return rows != null ? rows.slotOffset(e) : handle.slotOffset(e);
  }

  /** Rows of local slot {@code e}. */
  public int slotCount(int e) {
    return slotOffset(e + 1) - slotOffset(e);
  }

  /** The top-k weight of the selection behind received row {@code row}. */
  public float receivedWeight(int row) {
    return rows != null ? rows.receivedWeight(row) : handle.receivedWeight(row);
  }

  /** The rank that sent received row {@code row}. */
  public int rowSourceRank(int row) {
    return rows != null ? rows.rowSourceRank(row) : handle.rowSourceRank(row);
  }

  /** The index of received row {@code row}'s token on its source rank. */
  public int rowSourceToken(int row) {
    return rows != null ? rows.rowSourceToken(row) : handle.rowSourceToken(row);
  }

  /** Token-rank pairs received: the rows that crossed to this rank, one per (source token). */
  public int receivedPairs() {
    return rows != null ? rows.receivedPairs() : handle.receivedPairs();
  }

  /**
   * Rows this rank sent across a node boundary in this dispatch, on the path it took: one per
   * (token, remote node) on the node-level path, one per token-rank pair with a rank on another
   * node on the direct one (-1: a backend that does not count them).
   */
  public int rowsSentAcrossNodes() {
    return rows != null ? rows.rowsSentAcrossNodes() : handle.rowsSentAcrossNodes();
  }

  /** Tokens this rank dispatched. */
  public int tokens() {
    return rows != null ? rows.tokens() : handle.layout().tokens;
  }
}
