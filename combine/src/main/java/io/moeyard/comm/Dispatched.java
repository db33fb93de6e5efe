package io.moeyard.comm;

import io.moeyard.dispatch.DispatchHandle;
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
  final DispatchHandle handle;
  private final int slots;

  Dispatched(Communicator owner, long generation, DispatchHandle handle) {
    this.owner = owner;
    this.generation = generation;
    this.handle = handle;
    this.slots = handle.expertMap().slotsPerRank();
  }

  /** The receive buffer; rows {@code [0, receivedRows())} hold this dispatch's rows. */
  public RowBuffer received() {
    return handle.received();
  }

  /** Rows received (one per selection routed to one of this rank's slots). */
  public int receivedRows() {
    return handle.receivedRows();
  }

  /** Local slots of this rank (experts' physical copies it holds). */
  public int slots() {
    return slots;
  }

  /** First row of local slot {@code e}; {@code slotOffset(slots())} = {@link #receivedRows()}. */
  public int slotOffset(int e) {
    return handle.slotOffset(e);
  }

  /** Rows of local slot {@code e}. */
  public int slotCount(int e) {
    return handle.slotOffset(e + 1) - handle.slotOffset(e);
  }

  /** The top-k weight of the selection behind received row {@code row}. */
  public float receivedWeight(int row) {
    return handle.receivedWeight(row);
  }

  /** The rank that sent received row {@code row}. */
  public int rowSourceRank(int row) {
    return handle.rowSourceRank(row);
  }

  /** The index of received row {@code row}'s token on its source rank. */
  public int rowSourceToken(int row) {
    return handle.rowSourceToken(row);
  }

  /** Token-rank pairs received: the rows that crossed to this rank, one per (source token). */
  public int receivedPairs() {
    return handle.receivedPairs();
  }

  /** Tokens this rank dispatched. */
  public int tokens() {
    return handle.layout().tokens;
  }
}
