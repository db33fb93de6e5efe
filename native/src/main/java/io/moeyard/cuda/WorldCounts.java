package io.moeyard.cuda;

/**
 * The layout counts of one dispatch as every rank sees them after the count exchange: each source
 * rank's selections per slot and token-rank pairs per destination ({@code totals[q]}, P + R ints,
 * read back from its device once), and what follows from them on the host: rows and pairs each
 * destination receives, its slot offsets, the first staging row of each [source][local slot] block
 * and each source's prefix over slots (the unfused path's copy ranges). Immutable once built, so
 * every rank may read it.
 */
final class WorldCounts {
  final int[] tokens;
  final int[][] totals;
  final int[] rows;
  final int[] pairs;
  private final int nR;
  private final int nS;
  private final int nP;

  WorldCounts(int[] tokens, int[][] totals, int slotsPerRank) {
    this.tokens = tokens;
    this.totals = totals;
    this.nR = totals.length;
    this.nS = slotsPerRank;
    this.nP = nR * nS;
    this.rows = new int[nR];
    this.pairs = new int[nR];
    for (int d = 0; d < nR; d++) {
      long n = 0;
      long p = 0;
      for (int q = 0; q < nR; q++) {
        for (int ls = 0; ls < nS; ls++) n += totals[q][d * nS + ls];
        p += totals[q][nP + d];
      }
      rows[d] = (int) Math.min(Integer.MAX_VALUE, n);
      pairs[d] = (int) Math.min(Integer.MAX_VALUE, p);
    }
  }

  /**
   * Rows rank q sends across a node boundary on a single-hop path: one per token-rank pair with a
   * rank on another node when fused, one per selection of a slot on another node when not.
   */
  int rowsSentAcrossNodes(int q, int localRanks, boolean fused) {
    long n = 0;
    for (int d = 0; d < nR; d++) {
      if (d / localRanks == q / localRanks) continue;
      if (fused) {
        n += totals[q][nP + d];
      } else {
        for (int ls = 0; ls < nS; ls++) n += totals[q][d * nS + ls];
      }
    }
    return (int) Math.min(Integer.MAX_VALUE, n);
  }

  /** Rows source q sends to local slot ls of destination d. */
  int count(int q, int d, int ls) {
    return totals[q][d * nS + ls];
  }

  /** Destination d's first row of each local slot, and its row count last ({@code S + 1}). */
  int[] slotOffsets(int d) {
    int[] o = new int[nS + 1];
    for (int ls = 0; ls < nS; ls++) {
      int n = 0;
      for (int q = 0; q < nR; q++) n += count(q, d, ls);
      o[ls + 1] = o[ls] + n;
    }
    return o;
  }

  /** Destination d's first staging row of each [source q][local slot] block ({@code R * S + 1}). */
  int[] stagingPrefix(int d) {
    int[] prefix = new int[nR * nS + 1];
    int n = 0;
    for (int q = 0; q < nR; q++) {
      for (int ls = 0; ls < nS; ls++) {
        prefix[q * nS + ls] = n;
        n += count(q, d, ls);
      }
    }
    prefix[nR * nS] = n;
    return prefix;
  }

  /** Source q's exclusive prefix of selections over slots ({@code P + 1}). */
  int[] slotPrefix(int q) {
    int[] p = new int[nP + 1];
    for (int s = 0; s < nP; s++) p[s + 1] = p[s] + totals[q][s];
    return p;
  }

  /**
   * The source rank of destination d's received row {@code row}: rows of a slot are ordered by
   * source rank.
   */
  int rowSourceRank(int d, int row) {
    int[] off = slotOffsets(d);
    for (int ls = 0; ls < nS; ls++) {
      if (row < off[ls + 1]) {
        int i = row - off[ls];
        for (int q = 0; q < nR; q++) {
          int c = count(q, d, ls);
          if (i < c) return q;
          i -= c;
        }
      }
    }
    throw new IndexOutOfBoundsException("row " + row + " of " + off[nS] + " received rows");
  }
}
