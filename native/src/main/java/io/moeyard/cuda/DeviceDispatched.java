package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;

/**
 * The result of one device-path dispatch on one rank ({@link CudaCommunicator#dispatch(DeviceRows,
 * DeviceRouting, CudaStream)}): the received rows, in device memory, expert-major (all rows of
 * local slot 0, then slot 1, ...; within a slot by source rank, then source token), and where each
 * slot's rows start (host ints, known from the count read-back). The rows are ready in the order
 * of the stream the dispatch was given. Valid until the communicator's next dispatch; combine
 * refuses a result of another communicator or of an older dispatch.
 */
public final class DeviceDispatched {
  final Object owner;
  final long generation;
  final CommConfig.Variant variant;
  private final DeviceRows received;
  private final int[] slotOffsets;
  private final int tokens;
  private final int pairs;
  private final int rowsSentAcrossNodes;

  /** A result whose node crossings are not counted ({@link #rowsSentAcrossNodes()} -1). */
  DeviceDispatched(Object owner, long generation, CommConfig.Variant variant, DeviceRows received, int[] slotOffsets,
      int tokens, int pairs) {
    this(owner, generation, variant, received, slotOffsets, tokens, pairs, -1);
  }

  DeviceDispatched(Object owner, long generation, CommConfig.Variant variant, DeviceRows received, int[] slotOffsets,
      int tokens, int pairs, int rowsSentAcrossNodes) {
    this.owner = owner;
    this.generation = generation;
    this.variant = variant;
    this.received = received;
    this.slotOffsets = slotOffsets;
    this.tokens = tokens;
    this.pairs = pairs;
    this.rowsSentAcrossNodes = rowsSentAcrossNodes;
  }

  /** The received rows: {@link #receivedRows()} rows (and FP8 scales) in device memory. */
  public DeviceRows received() {
    return received;
  }

  public int receivedRows() {
    return received.rows();
  }

  /** Local slots of this rank. */
  public int slots() {
    return slotOffsets.length - 1;
  }

  /** First row of local slot {@code e}; {@code slotOffset(slots())} = {@link #receivedRows()}. */
  public int slotOffset(int e) {
    return slotOffsets[e];
  }

  public int slotCount(int e) {
    return slotOffsets[e + 1] - slotOffsets[e];
  }

  /** Tokens this rank dispatched. */
  public int tokens() {
    return tokens;
  }

  /** Token-rank pairs received (rows that crossed to this rank, one per source token). */
  public int receivedPairs() {
    return pairs;
  }

  /**
   * Rows this rank sent across a node boundary in this dispatch, on the path it took: one per
   * (token, remote node) it has a pair on through the node relay; one per token-rank pair with a
   * rank on another node on the single-hop fused path; one per selection of a slot on another node
   * on the unfused path (it sends a row per selection).
   */
  public int rowsSentAcrossNodes() {
    return rowsSentAcrossNodes;
  }
}
