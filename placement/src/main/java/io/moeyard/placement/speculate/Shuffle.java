package io.moeyard.placement.speculate;

/**
 * Where each token goes before one layer's dispatch, and the order that lays them out rank by rank.
 *
 * @param rank target rank of each token, {@code [tokens]}
 * @param predicted the rank the predictor liked best for each token, before capacities
 * @param order {@code order[i]} = the token at position i when tokens are laid out rank-major (rank
 *     0's tokens first, each rank's in ascending token index): a permutation of [0, tokens)
 * @param rankStart {@code [ranks + 1]}: rank r holds positions {@code [rankStart[r], rankStart[r + 1])}
 */
public record Shuffle(int[] rank, int[] predicted, int[] order, int[] rankStart) {
  static Shuffle of(int[] rank, int[] predicted, int ranks) {
    int[] start = new int[ranks + 1];
    for (int r : rank) start[r + 1]++;
    for (int r = 0; r < ranks; r++) start[r + 1] += start[r];
    int[] fill = java.util.Arrays.copyOf(start, ranks);
    int[] order = new int[rank.length];
    for (int t = 0; t < rank.length; t++) order[fill[rank[t]]++] = t;
    return new Shuffle(rank, predicted, order, start);
  }

  /** {@code position[t]}: where token t sits in {@link #order}; what restores token order at the end. */
  public int[] position() {
    int[] pos = new int[order.length];
    for (int i = 0; i < order.length; i++) pos[order[i]] = i;
    return pos;
  }
}
