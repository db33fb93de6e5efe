package io.moeyard.placement.ilp;

import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;

/**
 * Exact scores of a placement, with the definitions the planner optimises (and the cost model uses):
 * GPU load = sum over a GPU's slots of load(expert) / replicas(expert); balancedness = mean GPU
 * load / max GPU load; a pair (a, b) is GPU-local (node-local) when SOME replica of a and SOME
 * replica of b share a GPU (node).
 *
 * <p>The planner uses these to check its own results (never worse than the warm start), the tests
 * and the measurement driver use them to score plans.
 */
public final class PlanMetrics {
  private PlanMetrics() {}

  /** Tokens of a pair set, split by where they go: {@code total >= crossGpu >= crossNode}. */
  public record Traffic(long total, long crossGpu, long crossNode) {
    Traffic plus(Traffic o) {
      return new Traffic(total + o.total, crossGpu + o.crossGpu, crossNode + o.crossNode);
    }
  }

  /** GPU loads of one layer row under one workload's loads. */
  public static double[] gpuLoads(int[] row, int gpus, double[] load) {
    int slots = row.length;
    int spg = slots / gpus;
    int[] cnt = new int[load.length];
    for (int e : row) cnt[e]++;
    double[] g = new double[gpus];
    for (int p = 0; p < slots; p++) {
      int e = row[p];
      g[p / spg] += load[e] / cnt[e];
    }
    return g;
  }

  /** Balancedness of one layer row under one workload's loads (1 when the layer carries no load). */
  public static double balancedness(int[] row, int gpus, double[] load) {
    double[] g = gpuLoads(row, gpus, load);
    double max = 0, sum = 0;
    for (double v : g) {
      max = Math.max(max, v);
      sum += v;
    }
    return max <= 0 ? 1.0 : (sum / gpus) / max;
  }

  /** Balancedness per layer, {@code [layer]}, under one workload's {@code load[layer][expert]}. */
  public static double[] balancedness(Placement p, double[][] load) {
    double[] b = new double[p.layers()];
    for (int l = 0; l < p.layers(); l++) b[l] = balancedness(p.phy2log()[l], p.gpus(), load[l]);
    return b;
  }

  /** Mean over layers of balancedness under one workload. */
  public static double meanBalancedness(Placement p, double[][] load) {
    double s = 0;
    for (double v : balancedness(p, load)) s += v;
    return s / p.layers();
  }

  /** Per-expert presence masks of a layer row: {@code [expert][gpu]}. */
  static boolean[][] gpuPresence(int[] row, int experts, int gpus) {
    int spg = row.length / gpus;
    boolean[][] pres = new boolean[experts][gpus];
    for (int p = 0; p < row.length; p++) pres[row[p]][p / spg] = true;
    return pres;
  }

  static boolean[][] nodePresence(boolean[][] gpuPres, int nodes) {
    int experts = gpuPres.length;
    int gpus = experts == 0 ? 0 : gpuPres[0].length;
    int gpn = gpus / nodes;
    boolean[][] pres = new boolean[experts][nodes];
    for (int e = 0; e < experts; e++) for (int g = 0; g < gpus; g++) if (gpuPres[e][g]) pres[e][g / gpn] = true;
    return pres;
  }

  /** Traffic of the pairs between two layer rows (from at {@code a}, to at {@code b}). */
  public static Traffic traffic(int[] a, int[] b, PairCounts pairs, int experts, int gpus, int nodes) {
    boolean[][] ga = gpuPresence(a, experts, gpus), gb = gpuPresence(b, experts, gpus);
    boolean[][] na = nodePresence(ga, nodes), nb = nodePresence(gb, nodes);
    long total = 0, cg = 0, cn = 0;
    for (int i = 0; i < pairs.size(); i++) {
      int x = pairs.from()[i], y = pairs.to()[i];
      long c = pairs.count()[i];
      total += c;
      if (!shares(ga[x], gb[y])) cg += c;
      if (!shares(na[x], nb[y])) cn += c;
    }
    return new Traffic(total, cg, cn);
  }

  /** Layer-to-layer transition traffic summed over all consecutive layer pairs. */
  public static Traffic transitions(Placement p, PairCounts[] transitions, int nodes) {
    Traffic t = new Traffic(0, 0, 0);
    if (transitions == null) return t;
    for (int l = 0; l + 1 < p.layers(); l++) {
      t = t.plus(traffic(p.phy2log()[l], p.phy2log()[l + 1], transitions[l], p.experts(), p.gpus(), nodes));
    }
    return t;
  }

  /** Same-layer co-activation traffic summed over layers (a pair is "cross" when not co-located). */
  public static Traffic coactivations(Placement p, PairCounts[] coact, int nodes) {
    Traffic t = new Traffic(0, 0, 0);
    if (coact == null) return t;
    for (int l = 0; l < p.layers(); l++) {
      t = t.plus(traffic(p.phy2log()[l], p.phy2log()[l], coact[l], p.experts(), p.gpus(), nodes));
    }
    return t;
  }

  static boolean shares(boolean[] x, boolean[] y) {
    for (int i = 0; i < x.length; i++) if (x[i] && y[i]) return true;
    return false;
  }
}
