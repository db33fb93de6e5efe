package io.moeyard.placement.ilp;

import java.util.Arrays;

/** Maximum-weight perfect matching on a square matrix (Hungarian algorithm, O(n^3)). */
public final class Hungarian {
  private Hungarian() {}

  /** Returns {@code assign[row] = column} maximising the sum of {@code score[row][assign[row]]}. */
  public static int[] maximize(long[][] score) {
    int n = score.length;
    long max = 0;
    for (long[] r : score) for (long v : r) max = Math.max(max, v);
    // costs a[i][j] = max - score, 1-indexed potentials (e-maxx formulation)
    long[] u = new long[n + 1], v = new long[n + 1];
    int[] p = new int[n + 1], way = new int[n + 1];
    for (int i = 1; i <= n; i++) {
      p[0] = i;
      int j0 = 0;
      long[] minv = new long[n + 1];
      Arrays.fill(minv, Long.MAX_VALUE);
      boolean[] used = new boolean[n + 1];
      do {
        used[j0] = true;
        int i0 = p[j0], j1 = 0;
        long delta = Long.MAX_VALUE;
        for (int j = 1; j <= n; j++) {
          if (used[j]) continue;
          long cur = (max - score[i0 - 1][j - 1]) - u[i0] - v[j];
          if (cur < minv[j]) {
            minv[j] = cur;
            way[j] = j0;
          }
          if (minv[j] < delta) {
            delta = minv[j];
            j1 = j;
          }
        }
        for (int j = 0; j <= n; j++) {
          if (used[j]) {
            u[p[j]] += delta;
            v[j] -= delta;
          } else {
            minv[j] -= delta;
          }
        }
        j0 = j1;
      } while (p[j0] != 0);
      do {
        int j1 = way[j0];
        p[j0] = p[j1];
        j0 = j1;
      } while (j0 != 0);
    }
    int[] assign = new int[n];
    for (int j = 1; j <= n; j++) assign[p[j] - 1] = j - 1;
    return assign;
  }
}
