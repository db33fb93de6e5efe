package io.moeyard.placement.ilp;

import java.util.Arrays;
import java.util.Comparator;
import java.util.PriorityQueue;

/**
 * Greedy replication and packing over several workloads at once: what the planner uses when no warm
 * start is given, and for robust replica counts. With one workload it is EPLB's global policy
 * (replicate the expert with the largest load per replica; pack the heaviest replica first into
 * the lightest GPU with room); with several, "load" is the worst over workloads of the load
 * normalised by that workload's total, so a workload with few tokens counts as much as a big one.
 */
final class ReplicaGreedy {
  private ReplicaGreedy() {}

  /** Per-workload loads of one layer normalised to sum 1 ({@code [w][e]}); all-zero rows stay zero. */
  static double[][] normalise(double[][] loadsW) {
    double[][] out = new double[loadsW.length][];
    for (int w = 0; w < loadsW.length; w++) {
      double s = 0;
      for (double v : loadsW[w]) s += v;
      out[w] = new double[loadsW[w].length];
      if (s > 0) for (int e = 0; e < out[w].length; e++) out[w][e] = loadsW[w][e] / s;
    }
    return out;
  }

  /** Replica counts: start at 1, then give each extra slot to the expert with the largest worst-case load per replica. */
  static int[] replicaCounts(double[][] norm, int experts, int slots) {
    int[] cnt = new int[experts];
    Arrays.fill(cnt, 1);
    double[] worst = new double[experts];
    for (double[] w : norm) for (int e = 0; e < experts; e++) worst[e] = Math.max(worst[e], w[e]);
    PriorityQueue<Integer> pq =
        new PriorityQueue<>(Comparator.<Integer>comparingDouble(e -> -worst[e] / cnt[e]).thenComparingInt(e -> e));
    for (int e = 0; e < experts; e++) pq.add(e);
    for (int r = experts; r < slots; r++) {
      int e = pq.poll();
      cnt[e]++;
      pq.add(e);
    }
    return cnt;
  }

  /** Packs the replicas into GPUs with exactly slots / gpus slots each; returns the layer row (GPU-major). */
  static int[] pack(double[][] norm, int[] cnt, int gpus, int slots) {
    int experts = cnt.length;
    int spg = slots / gpus;
    int workloads = norm.length;
    int[] items = new int[slots];
    int k = 0;
    for (int e = 0; e < experts; e++) for (int r = 0; r < cnt[e]; r++) items[k++] = e;
    double[] size = new double[experts];
    for (int e = 0; e < experts; e++) {
      for (double[] w : norm) size[e] = Math.max(size[e], w[e] / cnt[e]);
    }
    Integer[] order = new Integer[slots];
    for (int i = 0; i < slots; i++) order[i] = i;
    Arrays.sort(order, Comparator.<Integer>comparingDouble(i -> -size[items[i]]).thenComparingInt(i -> items[i]));
    double[][] load = new double[workloads][gpus];
    int[] fill = new int[gpus];
    int[][] content = new int[gpus][spg];
    for (int oi : order) {
      int e = items[oi];
      int best = -1;
      double bestMax = Double.MAX_VALUE, bestSum = Double.MAX_VALUE;
      boolean bestHas = true;
      for (int g = 0; g < gpus; g++) {
        if (fill[g] == spg) continue;
        boolean has = false;
        for (int j = 0; j < fill[g]; j++) has |= content[g][j] == e;
        double mx = 0, sm = 0;
        for (int w = 0; w < workloads; w++) {
          double v = load[w][g] + norm[w][e] / cnt[e];
          mx = Math.max(mx, v);
          sm += v;
        }
        // prefer a GPU without this expert yet, then the smallest resulting worst load
        if ((bestHas && !has) || (has == bestHas && (mx < bestMax - 1e-15 || (mx <= bestMax + 1e-15 && sm < bestSum)))) {
          best = g;
          bestMax = mx;
          bestSum = sm;
          bestHas = has;
        }
      }
      content[best][fill[best]++] = e;
      for (int w = 0; w < workloads; w++) load[w][best] += norm[w][e] / cnt[e];
    }
    int[] row = new int[slots];
    for (int g = 0; g < gpus; g++) {
      Arrays.sort(content[g]);
      System.arraycopy(content[g], 0, row, g * spg, spg);
    }
    return row;
  }
}
