package io.moeyard.placement.ilp;

import io.moeyard.placement.model.PairCounts;
import java.util.Arrays;
import java.util.Comparator;
import java.util.PriorityQueue;

/**
 * Replica counts chosen for locality where balance leaves room (one layer).
 *
 * <p>EPLB spends every redundant slot on balance: the expert with the most load per replica gets
 * the next one. Where the warm start's packing is loose (hierarchical EPLB packs whole groups onto
 * nodes; on flat loads a global packing gets far closer to the mean), many of those replicas do no
 * balancing work, and under the nearest-replica rule they are worth more where they keep
 * transitions local.
 *
 * <p><b>What a copy is worth</b>, per neighbouring layer, from expert e's partners there ranked by
 * tokens. A copy on a GPU can share it with S = P / G experts of that layer: the k-th copy is
 * credited {@code gpuWeight x} the tokens to partners ranked (k-1)S+1..kS, as if each copy gathered
 * its own block of partners (while k <= G). For nodes, the partners beyond the first S are taken
 * as spread over the nodes: each copy on another node is credited {@code nodeWeight x} that tail /
 * N (while k <= N). So an expert whose tokens go to a few more partners than a GPU holds gains from
 * a second copy beside the rest (GPU locality), one whose tokens spread wide gains from a copy on
 * every node (node locality), one with a handful of partners from neither. The worth falls with k,
 * so greedy allocation is exact for it. The simpler credits that were tried and lost are in
 * placement/README.md ("Why the planner is built this way").
 *
 * <p><b>Balance decides how far that can go.</b> Each expert first gets the copies it needs so that
 * one copy carries at most a fraction tau of the warm start's max GPU load (for every workload),
 * the rest go by worth, and the result is packed heaviest first ({@link ReplicaGreedy#pack}). The
 * largest tau whose packing leaves {@link #ROOM} of the warm start's max GPU load free, for every
 * workload, wins, if its counts are worth at least {@link #MIN_GAIN} times the warm start's;
 * otherwise (tight packings, as EPLB's on real traces often are, or small estimated gains) the
 * warm start's counts stay.
 */
final class LocalityReplicas {
  private LocalityReplicas() {}

  /**
   * The share of the warm start's max GPU load the new packing must leave free: without it, counts
   * that merely fit under the cap took the room the swap search needs and cost transitions on ESFT
   * (the figures: placement/README.md, "Why the planner is built this way").
   */
  static final double ROOM = 0.02;

  /**
   * How much more than the warm start's counts the new ones must be worth. The worth is an
   * optimistic estimate (every expert's partners gather around its copies), off by a few percent
   * either way. On the DeepSeek-V3-shaped traces (60 s, cost = cross-GPU + 2 x cross-node) the
   * estimated gain was 2.5-15% per layer at affinity 0.65, and the plans gained 1.5-2.5%; at 0.8 it
   * was 0.4-2% and the plans moved 0 to -0.6%; at 0.9, 0.1-0.9% and they lost 1.5-2% (two seeds).
   */
  static final double MIN_GAIN = 1.05;

  /** Fractions of the warm start's max GPU load one copy may carry, most freedom first. */
  private static final double[] TAU = {1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1};

  /**
   * A layer row with replica counts chosen for locality, or null when the warm row's counts are
   * worth as much (or nothing else packs).
   *
   * @param loads {@code [workload][expert]} the loads each workload's cap is judged on
   * @param warmRow the warm start's row: its max GPU load per workload is the bound to keep
   * @param neighbours the layer's transition counts with its neighbours (null entries allowed)
   * @param into for each neighbour, true when it is the previous layer (pairs end at this layer)
   */
  static int[] row(double[][] loads, int[] warmRow, PairCounts[] neighbours, boolean[] into, int gpus, int nodes,
      long gpuWeight, long nodeWeight) {
    int experts = loads[0].length, slots = warmRow.length;
    Worth worth = new Worth(experts, neighbours, into, slots / gpus, gpus, nodes, gpuWeight, nodeWeight);
    double warmWorth = worth.of(CpSatPlanner.countsOf(warmRow, experts));

    // loads in units of the warm start's max GPU load, per workload: the packing must stay <= 1 - ROOM
    double[][] unit = new double[loads.length][experts];
    for (int w = 0; w < loads.length; w++) {
      double max = 0;
      for (double v : PlanMetrics.gpuLoads(warmRow, gpus, loads[w])) max = Math.max(max, v);
      if (max > 0) for (int e = 0; e < experts; e++) unit[w][e] = loads[w][e] / max;
    }
    for (double tau : TAU) {
      int[] cnt = new int[experts];
      int used = 0;
      for (int e = 0; e < experts; e++) {
        int need = 1;
        for (double[] u : unit) need = Math.max(need, (int) Math.ceil(u[e] / tau - 1e-12));
        cnt[e] = Math.min(need, gpus);
        used += cnt[e];
      }
      if (used > slots) continue;
      worth.spend(cnt, slots - used, unit);
      double w = worth.of(cnt);
      if (w <= warmWorth || w < MIN_GAIN * warmWorth) return null; // <=: a warm start worth 0 is not beaten by 0
      int[] row = ReplicaGreedy.pack(unit, cnt, gpus, slots);
      if (fits(row, unit, gpus, 1 - ROOM)) return row;
    }
    return null;
  }

  private static boolean fits(int[] row, double[][] unit, int gpus, double limit) {
    for (double[] u : unit) {
      for (double v : PlanMetrics.gpuLoads(row, gpus, u)) if (v > limit + 1e-9) return false;
    }
    return true;
  }

  /** The worth of each expert's k-th copy, from its partners ranked by tokens (see the class comment). */
  static final class Worth {
    /** Per expert and neighbouring layer: tokens to partners, heaviest first, as prefix sums (0 first). */
    private final long[][][] prefix;
    private final int perGpu, gpus, nodes;
    private final long gpuWeight, nodeWeight;

    Worth(int experts, PairCounts[] neighbours, boolean[] into, int slotsPerGpu, int gpus, int nodes, long gpuWeight,
        long nodeWeight) {
      this.perGpu = slotsPerGpu;
      this.gpus = gpus;
      this.nodes = nodes;
      this.gpuWeight = gpuWeight;
      this.nodeWeight = nodeWeight;
      prefix = new long[experts][neighbours.length][];
      for (int i = 0; i < neighbours.length; i++) {
        PairCounts pc = neighbours[i];
        int[] n = new int[experts];
        if (pc != null) for (int k = 0; k < pc.size(); k++) n[(into[i] ? pc.to() : pc.from())[k]]++;
        long[][] counts = new long[experts][];
        for (int e = 0; e < experts; e++) counts[e] = new long[n[e]];
        Arrays.fill(n, 0);
        if (pc != null) {
          for (int k = 0; k < pc.size(); k++) {
            int e = (into[i] ? pc.to() : pc.from())[k];
            counts[e][n[e]++] = pc.count()[k];
          }
        }
        for (int e = 0; e < experts; e++) {
          long[] c = counts[e];
          Arrays.sort(c);
          long[] p = new long[c.length + 1];
          for (int j = 0; j < c.length; j++) p[j + 1] = p[j] + c[c.length - 1 - j];
          prefix[e][i] = p;
        }
      }
    }

    /** What the k-th copy of expert e adds (0 for the first: every expert has one). */
    double copy(int e, int k) {
      if (k <= 1) return 0;
      double v = 0;
      for (long[] p : prefix[e]) {
        if (k <= gpus) v += gpuWeight * block(p, (long) (k - 1) * perGpu, (long) k * perGpu);
        if (k <= nodes) v += (double) nodeWeight * block(p, perGpu, p.length) / nodes;
      }
      return v;
    }

    private static long block(long[] prefix, long from, long to) {
      int n = prefix.length - 1;
      return prefix[(int) Math.min(to, n)] - prefix[(int) Math.min(from, n)];
    }

    double of(int[] cnt) {
      double s = 0;
      for (int e = 0; e < cnt.length; e++) for (int k = 2; k <= cnt[e]; k++) s += copy(e, k);
      return s;
    }

    /**
     * Gives {@code free} more copies, each to the expert whose next copy is worth most; copies worth
     * nothing go where EPLB would put them, to the most load per copy ({@code unit[w][e]}).
     */
    void spend(int[] cnt, int free, double[][] unit) {
      int experts = cnt.length;
      double[] next = new double[experts];
      double[] load = new double[experts];
      for (double[] u : unit) for (int e = 0; e < experts; e++) load[e] = Math.max(load[e], u[e]);
      for (int e = 0; e < experts; e++) next[e] = cnt[e] < gpus ? copy(e, cnt[e] + 1) : Double.NEGATIVE_INFINITY;
      PriorityQueue<Integer> pq = new PriorityQueue<>(Comparator.<Integer>comparingDouble(e -> -next[e])
          .thenComparingDouble(e -> -load[e] / cnt[e]).thenComparingInt(e -> e));
      for (int e = 0; e < experts; e++) pq.add(e);
      for (int r = 0; r < free; r++) {
        int e = pq.poll();
        cnt[e]++;
        next[e] = cnt[e] < gpus ? copy(e, cnt[e] + 1) : Double.NEGATIVE_INFINITY;
        pq.add(e);
      }
    }
  }
}
