package io.moeyard.placement.ilp;

import java.util.SplittableRandom;

/**
 * How local transitions can get on a trace when nothing else matters: experts of every layer
 * split into {@code groups} equal groups (GPUs or nodes) with no load balance, no replicas and
 * no slot count beyond E / groups, searched by best-improvement swaps, layer after layer with
 * both neighbours fixed, until a sweep gains nothing; best of several random starts. Not a proof
 * (a local search), but an optimistic yardstick: a planner that must also balance loads and
 * place replicas is not expected to beat it, so it tells how much of a cut target a trace allows.
 */
final class LocalityHeadroom {
  private LocalityHeadroom() {}

  /** {@code [layers - 1][E][E]} token counts a at l -> b at l + 1, all top-k x top-k pairs. */
  static long[][][] transitions(int[][][] trace, int experts) {
    int layers = trace[0].length;
    long[][][] m = new long[layers - 1][experts][experts];
    for (int[][] token : trace) {
      for (int l = 0; l + 1 < layers; l++) {
        for (int a : token[l]) {
          if (a < 0) continue;
          for (int b : token[l + 1]) if (b >= 0) m[l][a][b]++;
        }
      }
    }
    return m;
  }

  /**
   * Share of an expert's transitions that go to its {@code n} most frequent successors, weighted
   * by the expert's transitions and averaged over layer pairs: how concentrated routing is.
   */
  static double topSuccessorShare(long[][][] m, int n) {
    double sum = 0;
    for (long[][] ml : m) {
      long total = 0, top = 0;
      for (long[] row : ml) {
        long[] sorted = row.clone();
        java.util.Arrays.sort(sorted);
        for (int i = 0; i < Math.min(n, sorted.length); i++) top += sorted[sorted.length - 1 - i];
        for (long c : row) total += c;
      }
      sum += total == 0 ? 0 : (double) top / total;
    }
    return sum / m.length;
  }

  /** Fraction of transitions that cross groups, the best of {@code starts} random starts. */
  static double crossFraction(long[][][] m, int groups, int starts, long seed) {
    int layers = m.length + 1;
    int experts = m[0].length;
    long total = 0;
    for (long[][] ml : m) for (long[] row : ml) for (long c : row) total += c;
    SplittableRandom rnd = new SplittableRandom(seed);
    double best = 1;
    for (int s = 0; s < starts; s++) {
      int[][] g = new int[layers][experts];
      for (int l = 0; l < layers; l++) {
        int[] perm = permutation(experts, rnd);
        for (int e = 0; e < experts; e++) g[l][perm[e]] = e % groups;
      }
      boolean improved = true;
      while (improved) {
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
      for (long[] row : nb) java.util.Arrays.fill(row, 0);
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

  private static int[] permutation(int n, SplittableRandom rnd) {
    int[] p = new int[n];
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
      int j = rnd.nextInt(i + 1);
      int t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
