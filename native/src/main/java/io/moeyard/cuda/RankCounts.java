package io.moeyard.cuda;

/**
 * The host's copy of one rank's counts: its input's token count and the layout counts read back
 * after the layout phase, from which receive sizes and the unfused path's copy ranges come.
 */
final class RankCounts {
  /** Tokens of the uploaded input. */
  int tokens;
  /** As a source: selections per slot, then token-rank pairs per destination rank ({@code P + R}). */
  int[] totals;
  /** As a source: exclusive prefix of selections over slots ({@code P + 1}). */
  int[] slotPrefix;
  /** As a destination: first staging row of each [source rank][local slot] block ({@code R * S + 1}). */
  int[] stagingPrefix;
  /** As a destination: rows and token-rank pairs received. */
  int rows;
  int pairs;

}
