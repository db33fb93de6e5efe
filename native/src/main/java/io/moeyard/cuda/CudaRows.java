package io.moeyard.cuda;

import io.moeyard.comm.Dispatched;
import io.moeyard.engine.RowBuffer;

/**
 * A host copy of one device dispatch result, as {@link Dispatched} answers it on the {@code cuda}
 * backend. Source ranks come from the counts (a slot's rows are ordered by source rank); source
 * tokens from the pair records, which only the fused dispatch writes.
 */
final class CudaRows implements Dispatched.Rows {
  final DeviceDispatched device;
  private final RowBuffer received;
  private final float[] weights;
  private final int[] rowToken;
  /** Pair records (fused only, else null): source rank and token of each received pair. */
  final int[] pairSrc;
  final int[] pairToken;
  private final WorldCounts counts;
  private final int rank;

  CudaRows(DeviceDispatched device, RowBuffer received, float[] weights, int[] rowToken, int[] pairSrc, int[] pairToken,
      WorldCounts counts, int rank) {
    this.device = device;
    this.received = received;
    this.weights = weights;
    this.rowToken = rowToken;
    this.pairSrc = pairSrc;
    this.pairToken = pairToken;
    this.counts = counts;
    this.rank = rank;
  }

  @Override
  public RowBuffer received() {
    return received;
  }

  @Override
  public int receivedRows() {
    return device.receivedRows();
  }

  @Override
  public int slots() {
    return device.slots();
  }

  @Override
  public int slotOffset(int e) {
    return device.slotOffset(e);
  }

  @Override
  public float receivedWeight(int row) {
    return weights[row];
  }

  @Override
  public int rowSourceRank(int row) {
    return counts.rowSourceRank(rank, row);
  }

  @Override
  public int rowSourceToken(int row) {
    if (rowToken == null) {
      throw new UnsupportedOperationException("the unfused cuda dispatch writes no pair records: source tokens are unknown");
    }
    return rowToken[row];
  }

  @Override
  public int receivedPairs() {
    return device.receivedPairs();
  }

  @Override
  public int tokens() {
    return device.tokens();
  }

  @Override
  public int rowsSentAcrossNodes() {
    return device.rowsSentAcrossNodes();
  }
}
