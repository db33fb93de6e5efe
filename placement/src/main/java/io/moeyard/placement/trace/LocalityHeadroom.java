package io.moeyard.placement.trace;

import io.moeyard.placement.model.PairCounts;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * How local a trace's transitions can get when nothing else matters, and how concentrated they
 * are: a yardstick for what any placement of that trace can reach ({@code moeyard trace stats
 * --headroom G}).
 *
 * <p>The headroom search splits every layer's experts into {@code groups} equal groups (GPUs or
 * nodes) with no load balance and no replicas, by best-improvement swaps layer after layer with
 * both neighbours fixed, until a sweep gains nothing; best of several random starts. It is a
 * local search, not a proof, but an optimistic one: a planner that must also balance loads and
 * place replicas is not expected to beat it, so it tells how much of a cut target a trace allows.
 */
public final class LocalityHeadroom {
  private LocalityHeadroom() {}

  /** {@code [layers - 1][E][E]}: transition counts a at l -> b at l + 1. */
  static long[][][] dense(PairCounts[] transitions, int experts) {
    long[][][] m = new long[transitions.length][experts][experts];
    for (int l = 0; l < transitions.length; l++) {
      PairCounts p = transitions[l];
      for (int i = 0; i < p.size(); i++) m[l][p.from()[i]][p.to()[i]] += p.count()[i];
    }
    return m;
  }

  /**
   * Share of an expert's transitions that go to its {@code n} most frequent successors, weighted
   * by the expert's transitions and averaged over layer pairs: how concentrated routing is.
   */
  public static double topSuccessorShare(PairCounts[] transitions, int experts, int n) {
    long[][][] m = dense(transitions, experts);
    double sum = 0;
    for (long[][] ml : m) {
      long total = 0, top = 0;
      for (long[] row : ml) {
        long[] sorted = row.clone();
        Arrays.sort(sorted);
        for (int i = 0; i < Math.min(n, sorted.length); i++) top += sorted[sorted.length - 1 - i];
        for (long c : row) total += c;
      }
      sum += total == 0 ? 0 : (double) top / total;
    }
    return m.length == 0 ? 0 : sum / m.length;
  }

  /**
   * Fraction of transitions that cross groups after the headroom search, the best of {@code
   * starts} random starts, stopping early (with the best so far) at {@code deadlineNanos}.
   */
  public static double crossFraction(PairCounts[] transitions, int experts, int groups, int starts, long seed,
      long deadlineNanos) {
    if (groups < 1 || groups > experts) {
      throw new IllegalArgumentException("groups must be in [1, experts = " + experts + "], got " + groups);
    }
    long[][][] m = dense(transitions, experts);
    int layers = m.length + 1;
    long total = 0;
    for (long[][] ml : m) for (long[] row : ml) for (long c : row) total += c;
    if (total == 0) return 0;
    SplittableRandom rnd = new SplittableRandom(seed);
    double best = 1;
    for (int s = 0; s < starts && (s == 0 || System.nanoTime() < deadlineNanos); s++) {
      int[][] g = new int[layers][experts];
      for (int l = 0; l < layers; l++) {
        int[] perm = SyntheticTrace.permutation(experts, rnd);
        for (int e = 0; e < experts; e++) g[l][perm[e]] = e % groups;
      }
      boolean improved = true;
      while (improved && System.nanoTime() < deadlineNanos) {
        improved = false;
        for (int l = 0; l < layers; l++) improved |= refineLayer(m, g, l, groups);
      }
      best = Math.min(best, (double) (total - local(m, g)) / total);
    }
    return best;
  }

  /** Best-improvement swaps in layer l until none gains; true if any did. */
  private static boolean refineLayer(long[][][] m, int[][] g, int l, int groups) {
    int experts = g[l].length;
    long[][] nb = new long[experts][groups];
    boolean any = false;
    while (true) {
      for (long[] row : nb) Arrays.fill(row, 0);
      for (int e = 0; e < experts; e++) {
        if (l > 0) for (int a = 0; a < experts; a++) nb[e][g[l - 1][a]] += m[l - 1][a][e];
        if (l < m.length) for (int b = 0; b < experts; b++) nb[e][g[l + 1][b]] += m[l][e][b];
      }
      long bestGain = 0;
      int x = -1, y = -1;
      for (int e1 = 0; e1 < experts; e1++) {
        for (int e2 = e1 + 1; e2 < experts; e2++) {
          int g1 = g[l][e1], g2 = g[l][e2];
          if (g1 == g2) continue;
          long gain = nb[e1][g2] - nb[e1][g1] + nb[e2][g1] - nb[e2][g2];
          if (gain > bestGain) {
            bestGain = gain;
            x = e1;
            y = e2;
          }
        }
      }
      if (x < 0) return any;
      int t = g[l][x];
      g[l][x] = g[l][y];
      g[l][y] = t;
      any = true;
    }
  }

  private static long local(long[][][] m, int[][] g) {
    long s = 0;
    for (int l = 0; l < m.length; l++) {
      for (int a = 0; a < m[l].length; a++) for (int b = 0; b < m[l].length; b++) if (g[l][a] == g[l + 1][b]) s += m[l][a][b];
    }
    return s;
  }
}
