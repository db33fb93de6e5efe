package io.moeyard.dispatch;

import io.moeyard.engine.RowBuffer;

/**
 * What a receiving rank publishes for one dispatch: where senders store rows and the metadata of
 * each row. Senders write disjoint ranges (computed from the announced counts), so no two ranks
 * ever write the same element and no locking is needed; the closing barrier publishes it all.
 */
final class ReceiveWindow {
  final RowBuffer rows;
  /** The unfused path's all-to-all target (source-rank-major), or null on the fused path. */
  final RowBuffer staging;
  final float[] weights;
  final int[] rowSrcRank;
  final int[] rowSrcToken;
  final int[] pairSrcRank;
  final int[] pairHomeIndex;
  final int[] pairRowStart;
  final int[] pairRows;

  ReceiveWindow(RowBuffer rows, RowBuffer staging, int receivedRows, int receivedPairs) {
    this.rows = rows;
    this.staging = staging;
    this.weights = new float[receivedRows];
    this.rowSrcRank = new int[receivedRows];
    this.rowSrcToken = new int[receivedRows];
    this.pairSrcRank = new int[receivedPairs];
    this.pairHomeIndex = new int[receivedPairs];
    this.pairRowStart = new int[receivedPairs + 1];
    this.pairRows = new int[receivedRows];
    this.pairRowStart[receivedPairs] = receivedRows;
  }
}
