package io.moeyard.comm;

/**
 * The rows a shuffled combine ({@link Communicator#combineShuffled}) stored on this rank, in the
 * order they lie in the caller's buffer: by source rank, then by the token's index on its source.
 */
public final class Arrivals {
  private final int[] sourceRank;
  private final int[] sourceToken;

  Arrivals(int[] sourceRank, int[] sourceToken) {
    this.sourceRank = sourceRank;
    this.sourceToken = sourceToken;
  }

  /** Rows that arrived. */
  public int rows() {
    return sourceRank.length;
  }

  /** The rank whose token row {@code i} is. */
  public int sourceRank(int i) {
    return sourceRank[i];
  }

  /** The index of row {@code i}'s token on its source rank (in the dispatch it came from). */
  public int sourceToken(int i) {
    return sourceToken[i];
  }
}
