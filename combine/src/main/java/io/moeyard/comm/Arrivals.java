package io.moeyard.comm;

/**
 * The rows a shuffled combine ({@link Communicator#combineShuffled}) stored on this rank, in the
 * order they lie in the caller's buffer: by source rank, then by the token's index on its source.
 * Valid until the communicator's next shuffled combine, which refills it (a steady state of calls
 * allocates no result of its own), like {@link Dispatched} until the next dispatch.
 */
public final class Arrivals {
  private int[] sourceRank = new int[0];
  private int[] sourceToken = new int[0];
  private int rows;

  Arrivals() {}

  /** The first {@code rows} entries of the arrays (the delivery's own, which it reuses) are this call's. */
  void set(int[] sourceRank, int[] sourceToken, int rows) {
    this.sourceRank = sourceRank;
    this.sourceToken = sourceToken;
    this.rows = rows;
  }

  /** Rows that arrived. */
  public int rows() {
    return rows;
  }

  /** The rank whose token row {@code i} is. */
  public int sourceRank(int i) {
    java.util.Objects.checkIndex(i, rows);
    return sourceRank[i];
  }

  /** The index of row {@code i}'s token on its source rank (in the dispatch it came from). */
  public int sourceToken(int i) {
    java.util.Objects.checkIndex(i, rows);
    return sourceToken[i];
  }
}
