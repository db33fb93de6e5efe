package io.moeyard.placement.speculate;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.eplb.Eplb;
import io.moeyard.placement.ilp.Hungarian;
import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * A placement for speculation: on each rank, experts that tokens choose together; from layer to
 * layer, the groups that tokens travel between under the same rank label.
 *
 * <p>Speculation can only make a token's activations local where its experts of one layer share a
 * rank, so the first goal is same-layer co-activation inside a rank. Per layer, starting from
 * EPLB's balanced placement (its replica counts are kept), a swap search exchanges the contents of
 * two slots on different ranks whenever that raises the co-activation pairs kept on one rank and
 * leaves both ranks' loads under a cap: EPLB's own worst rank load, or mean / {@code minBalance}
 * if that is looser. Swaps are evaluated in O(1) from per-(expert, rank) sums, so a sweep over all
 * slot pairs is cheap and sweeps repeat until none gains.
 *
 * <p>Then the ranks of each layer are relabelled (a permutation of whole ranks, which changes
 * neither balance nor co-activation) to keep the most layer-to-layer transitions on one rank
 * label: a maximum-weight matching between the previous layer's ranks and this layer's groups.
 * That way a token whose experts stay within one group across layers need not move at all, and
 * a wrong prediction at layer l often still lands on the rank of its layer l-1 experts.
 */
public final class ExpertGrouping {
  /** The balancedness (mean / max rank load) the grouping may go down to on the training trace. */
  public static final double MIN_BALANCE = 0.9;

  private static final int MAX_SWEEPS = 50;

  private ExpertGrouping() {}

  /**
   * @param slots physical slots per layer, a multiple of {@code gpus} and at least the experts
   * @param layerDone called after each layer; may be null
   */
  public static Placement plan(List<RoutingTrace> train, int gpus, int slots, double minBalance, IntConsumer layerDone) {
    RoutingTrace first = train.get(0);
    int L = first.layers(), E = first.experts();
    if (gpus <= 0 || slots % gpus != 0) throw new IllegalArgumentException("slots " + slots + " is not a multiple of gpus " + gpus);
    if (slots < E) throw new IllegalArgumentException("slots " + slots + " are fewer than the " + E + " experts");
    if (!(minBalance > 0 && minBalance <= 1)) throw new IllegalArgumentException("minimum balance must be in (0, 1], got " + minBalance);
    double[][] loads = new double[L][E];
    double[][][] co = new double[L][E][E];
    long[][][] trans = new long[L][E][E];
    for (RoutingTrace t : train) {
      if (t.layers() != L || t.experts() != E) {
        throw new IllegalArgumentException(t.name() + ": " + t.layers() + " layers x " + t.experts() + " experts, " + first.name()
            + " has " + L + " x " + E);
      }
      double[][] tl = t.loads();
      for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) loads[l][e] += tl[l][e];
      PairCounts[] c = t.coactivations();
      for (int l = 0; l < L; l++) {
        for (int i = 0; i < c[l].size(); i++) {
          co[l][c[l].from()[i]][c[l].to()[i]] += c[l].count()[i];
          co[l][c[l].to()[i]][c[l].from()[i]] += c[l].count()[i];
        }
      }
      PairCounts[] tr = t.transitions();
      for (int l = 0; l + 1 < L; l++) {
        for (int i = 0; i < tr[l].size(); i++) trans[l + 1][tr[l].from()[i]][tr[l].to()[i]] += tr[l].count()[i];
      }
    }
    int[][] phy2log = Eplb.rebalance(loads, slots, 1, 1, gpus).phy2log();
    for (int l = 0; l < L; l++) {
      group(phy2log[l], loads[l], co[l], gpus, minBalance);
      if (l > 0) align(phy2log[l - 1], phy2log[l], trans[l], E, gpus);
      if (layerDone != null) layerDone.accept(l);
    }
    return new Placement(E, gpus, phy2log);
  }

  /** The swap search of one layer, in place on {@code slots}. */
  static void group(int[] slots, double[] load, double[][] co, int gpus, double minBalance) {
    int P = slots.length, E = load.length, per = P / gpus;
    int[] cnt = new int[E];
    for (int e : slots) cnt[e]++;
    double[] share = new double[E];
    for (int e = 0; e < E; e++) share[e] = cnt[e] == 0 ? 0 : load[e] / cnt[e];
    double[] rankLoad = CostModel.gpuLoads(load, slots, gpus);
    double mean = 0, max = 0;
    for (double v : rankLoad) {
      mean += v / gpus;
      max = Math.max(max, v);
    }
    double cap = Math.max(max, mean / minBalance) + 1e-9;
    boolean[][] member = new boolean[gpus][E];
    double[][] pull = new double[E][gpus];
    for (int p = 0; p < P; p++) member[p / per][slots[p]] = true;
    for (int e = 0; e < E; e++) {
      for (int r = 0; r < gpus; r++) {
        for (int x = 0; x < E; x++) if (member[r][x]) pull[e][r] += co[e][x];
      }
    }
    for (int sweep = 0; sweep < MAX_SWEEPS; sweep++) {
      boolean moved = false;
      for (int p = 0; p < P; p++) {
        for (int q = (p / per + 1) * per; q < P; q++) {
          int a = slots[p], b = slots[q], ra = p / per, rb = q / per;
          if (a == b || member[ra][b] || member[rb][a]) continue;
          double gain = pull[a][rb] + pull[b][ra] - pull[a][ra] - pull[b][rb] - 2 * co[a][b];
          if (gain <= 1e-9) continue;
          if (rankLoad[ra] - share[a] + share[b] > cap || rankLoad[rb] - share[b] + share[a] > cap) continue;
          slots[p] = b;
          slots[q] = a;
          member[ra][a] = false;
          member[ra][b] = true;
          member[rb][b] = false;
          member[rb][a] = true;
          rankLoad[ra] += share[b] - share[a];
          rankLoad[rb] += share[a] - share[b];
          for (int e = 0; e < E; e++) {
            double d = co[e][b] - co[e][a];
            pull[e][ra] += d;
            pull[e][rb] -= d;
          }
          moved = true;
        }
      }
      if (!moved) break;
    }
  }

  /** Relabels the ranks of {@code cur} to keep the most transitions from {@code prev} on one label. */
  static void align(int[] prev, int[] cur, long[][] trans, int experts, int gpus) {
    int per = cur.length / gpus;
    boolean[][] prevOn = new boolean[gpus][experts], curOn = new boolean[gpus][experts];
    for (int p = 0; p < prev.length; p++) prevOn[p / per][prev[p]] = true;
    for (int p = 0; p < cur.length; p++) curOn[p / per][cur[p]] = true;
    long[][] w = new long[gpus][gpus];
    for (int r = 0; r < gpus; r++) {
      for (int g = 0; g < gpus; g++) {
        for (int a = 0; a < experts; a++) {
          if (!prevOn[r][a]) continue;
          for (int b = 0; b < experts; b++) if (curOn[g][b]) w[r][g] += trans[a][b];
        }
      }
    }
    int[] match = Hungarian.maximize(w);
    int[] old = cur.clone();
    for (int r = 0; r < gpus; r++) System.arraycopy(old, match[r] * per, cur, r * per, per);
  }
}
