package io.moeyard.placement.cost;

/**
 * Which rank a trace's token lives on, since a trace does not record it: rank r holds the
 * contiguous block {@code [start(r), start(r + 1))} of the first {@code tokens} tokens, blocks as
 * even as the count allows. Contiguous because consecutive tokens of one sequence stay on one
 * data-parallel rank, and because it is how {@code moeyard bench --trace} feeds the data path
 * (rank r takes {@code [r * T, (r + 1) * T)}: the split of {@code ranks * T} tokens), so the cost
 * model and the bench count the same rows.
 *
 * @param tokens tokens split, the trace's first ones
 * @param ranks ranks they are split over
 */
public record TokenSplit(int tokens, int ranks) {
  public TokenSplit {
    if (ranks <= 0) throw new IllegalArgumentException("ranks must be positive, got " + ranks);
    if (tokens < 0) throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
  }

  /** {@code tokensPerRank} tokens on each of {@code ranks} ranks, the bench's split. */
  public static TokenSplit perRank(int tokensPerRank, int ranks) {
    if (tokensPerRank < 0) throw new IllegalArgumentException("tokens per rank must be >= 0, got " + tokensPerRank);
    return new TokenSplit(Math.multiplyExact(tokensPerRank, ranks), ranks);
  }

  /** Trace index of rank r's first token; {@code start(ranks) == tokens}. */
  public int start(int rank) {
    return (int) ((long) rank * tokens / ranks);
  }

  /** Tokens on rank r. */
  public int count(int rank) {
    return start(rank + 1) - start(rank);
  }
}
