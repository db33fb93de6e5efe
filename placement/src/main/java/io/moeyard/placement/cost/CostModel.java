package io.moeyard.placement.cost;

import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;

/**
 * Scores a {@link Placement} on a {@link PlacementProblem} from aggregate counts only (loads and
 * pair counts), so that planners and reports agree on one number for a plan.
 *
 * <p>Transitions and replicas, by {@link ReplicaRule}: {@code UNIFORM} (the default) assumes a
 * token uses each replica with equal probability, so a transition a -> b stays on one GPU with
 * probability {@code sum_g share_a(g) * share_b(g)}, where {@code share_x(g)} is the fraction of
 * x's replicas on GPU g; {@code NEAREST} counts it local when some replica of a and some replica
 * of b share the GPU (node). Without replicas both are exactly 0 or 1. The token-level {@link
 * DispatchModel} uses a locality-preferring replica choice; it needs the per-token trace.
 */
public final class CostModel {
  private CostModel() {}

  /** Scores every layer of {@code placement} on {@code problem}, transitions under {@link ReplicaRule#UNIFORM}. */
  public static PlacementScore score(PlacementProblem problem, Placement placement) {
    return score(problem, placement, ReplicaRule.UNIFORM);
  }

  /** Scores every layer of {@code placement} on {@code problem}, transitions under {@code rule}. */
  public static PlacementScore score(PlacementProblem problem, Placement placement, ReplicaRule rule) {
    check(problem, placement);
    int layers = problem.layers();
    LayerCost[] out = new LayerCost[layers];
    double sumBal = 0, worst = Double.POSITIVE_INFINITY, sumMax = 0, trans = 0, xg = 0, xn = 0;
    int balCount = 0;
    for (int l = 0; l < layers; l++) {
      LayerCost c = layer(problem, placement, l, rule);
      out[l] = c;
      for (double b : c.balancedness()) {
        sumBal += b;
        balCount++;
        worst = Math.min(worst, b);
      }
      sumMax += c.maxGpuLoad();
      trans += c.transitions();
      xg += c.crossGpu();
      xn += c.crossNode();
    }
    return new PlacementScore(out, sumBal / balCount, worst, sumMax, trans, xg, xn);
  }

  /** Scores one layer; transitions are those from {@code layer} to {@code layer + 1}, under {@code rule}. */
  public static LayerCost layer(PlacementProblem problem, Placement placement, int layer, ReplicaRule rule) {
    int workloads = problem.loads().length;
    int[] phy2log = placement.phy2log()[layer];
    double[][] gpuLoads = new double[workloads][];
    double[] bal = new double[workloads];
    double maxLoad = 0;
    for (int w = 0; w < workloads; w++) {
      gpuLoads[w] = gpuLoads(problem.loads()[w][layer], phy2log, problem.gpus());
      bal[w] = balancedness(gpuLoads[w]);
      for (double v : gpuLoads[w]) maxLoad = Math.max(maxLoad, v);
    }
    double trans = 0, xg = 0, xn = 0;
    if (problem.transitions() != null && layer < problem.layers() - 1) {
      PairCounts t = problem.transitions()[layer];
      double[] r = crossing(t, placement, layer, problem.gpus(), problem.nodes(), rule);
      trans = r[0];
      xg = r[1];
      xn = r[2];
    }
    return new LayerCost(layer, gpuLoads, bal, maxLoad, trans, xg, xn);
  }

  /** Tokens each GPU computes for one layer: every replica of expert e takes {@code load[e] / count(e)}. */
  public static double[] gpuLoads(double[] expertLoads, int[] phy2log, int gpus) {
    int[] cnt = new int[expertLoads.length];
    for (int e : phy2log) cnt[e]++;
    int perGpu = phy2log.length / gpus;
    double[] out = new double[gpus];
    for (int p = 0; p < phy2log.length; p++) {
      int e = phy2log[p];
      out[p / perGpu] += expertLoads[e] / cnt[e];
    }
    return out;
  }

  /** Mean / max (SGLang's definition); 1 for an idle layer, which is perfectly balanced. */
  public static double balancedness(double[] gpuLoads) {
    double sum = 0, max = 0;
    for (double v : gpuLoads) {
      sum += v;
      max = Math.max(max, v);
    }
    return max == 0 ? 1.0 : (sum / gpuLoads.length) / max;
  }

  /**
   * {@code {total, crossGpu, crossNode}} for the transitions from layer l to l + 1, under {@code
   * rule} (see the class documentation).
   */
  public static double[] crossing(PairCounts t, Placement placement, int layer, int gpus, int nodes, ReplicaRule rule) {
    double[][] shareA = gpuShares(placement.phy2log()[layer], placement.experts(), gpus);
    double[][] shareB = gpuShares(placement.phy2log()[layer + 1], placement.experts(), gpus);
    int[][] gpusOfA = nonZero(shareA);
    int gpusPerNode = gpus / nodes;
    double[][] nodeB = new double[shareB.length][nodes];
    for (int e = 0; e < shareB.length; e++) {
      for (int g = 0; g < gpus; g++) nodeB[e][g / gpusPerNode] += shareB[e][g];
    }
    double total = 0, xg = 0, xn = 0;
    for (int i = 0; i < t.size(); i++) {
      int a = t.from()[i], b = t.to()[i];
      double c = t.count()[i];
      double sameGpu = 0, sameNode = 0;
      if (rule == ReplicaRule.UNIFORM) {
        for (int g : gpusOfA[a]) {
          sameGpu += shareA[a][g] * shareB[b][g];
          sameNode += shareA[a][g] * nodeB[b][g / gpusPerNode];
        }
      } else {
        for (int g : gpusOfA[a]) {
          if (shareB[b][g] > 0) sameGpu = 1;
          if (nodeB[b][g / gpusPerNode] > 0) sameNode = 1;
        }
      }
      total += c;
      xg += c * (1 - sameGpu);
      xn += c * (1 - sameNode);
    }
    return new double[] {total, clampZero(xg), clampZero(xn)};
  }

  private static double clampZero(double v) {
    // 1 - (1/3 + 1/3 + 1/3) leaves rounding dust; a negative count would read as nonsense.
    return Math.abs(v) < 1e-9 ? 0 : v;
  }

  /** {@code [expert][gpu]} fraction of the expert's replicas on that GPU. */
  public static double[][] gpuShares(int[] phy2log, int experts, int gpus) {
    int perGpu = phy2log.length / gpus;
    int[] cnt = new int[experts];
    for (int e : phy2log) cnt[e]++;
    double[][] s = new double[experts][gpus];
    for (int p = 0; p < phy2log.length; p++) {
      int e = phy2log[p];
      s[e][p / perGpu] += 1.0 / cnt[e];
    }
    return s;
  }

  private static int[][] nonZero(double[][] share) {
    int[][] out = new int[share.length][];
    for (int e = 0; e < share.length; e++) {
      int n = 0;
      for (double v : share[e]) if (v > 0) n++;
      out[e] = new int[n];
      n = 0;
      for (int g = 0; g < share[e].length; g++) if (share[e][g] > 0) out[e][n++] = g;
    }
    return out;
  }

  private static void check(PlacementProblem problem, Placement placement) {
    if (placement.layers() != problem.layers() || placement.experts() != problem.experts()
        || placement.gpus() != problem.gpus() || placement.slots() != problem.slots()) {
      throw new IllegalArgumentException(
          "placement (layers=" + placement.layers() + ", experts=" + placement.experts() + ", gpus=" + placement.gpus()
              + ", slots=" + placement.slots() + ") does not fit the problem (layers=" + problem.layers() + ", experts="
              + problem.experts() + ", gpus=" + problem.gpus() + ", slots=" + problem.slots() + ")");
    }
  }
}
