package io.moeyard.placement.ilp;

import io.moeyard.placement.model.PairCounts;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The affinity objective of one layer's sub-problem (see package-info), written once: its terms
 * are built here from the fixed neighbouring layers and the co-activation pairs, and every user
 * reads them here: the exact cost ({@link #cost}), the swap search's per-expert gain
 * ({@link #expertGain}), the GPU relabelling's linear weights ({@link #linearGain}), the solver-free
 * bound ({@link #relaxedBound}) and the CP-SAT model ({@link LayerModel#solve}).
 *
 * <p>Cost = {@link #constCost} minus the gain of what stays local, in weighted tokens:
 * <ul>
 *   <li>{@link #wg}{@code [e][g]}: earned when e has a replica on GPU g (a neighbour's expert with
 *       one GPU there);
 *   <li>{@link #wn}{@code [e][k]}: earned when e has a replica on node k;
 *   <li>a {@link Special} (e and a neighbour's expert both replicated): earned once when e shares
 *       any GPU (node) with the neighbour's replicas;
 *   <li>under the uniform replica rule, {@link #wu}{@code [e][g]} per replica of e on GPU g, in
 *       {@link #unit}s per token (its shares are fractions);
 *   <li>a co-activation pair (single-replica experts only): earned when both sit on one GPU (node).
 * </ul>
 */
final class LayerObjective {
  /** Cost units per token under the uniform replica rule (its shares are fractions). */
  static final long UNIFORM_UNIT = 1000;

  /** A transition between e and a replicated neighbour expert, local when e shares a GPU (node) of its masks. */
  record Special(int e, boolean[] gmask, boolean[] nmask, long c) {}

  private final int experts, gpus, nodes, spg, gpn;
  private final int[] cnt;
  private final CpSatTuning tuning;
  /** Cost with nothing local. */
  final long constCost;
  final long[][] wg; // [e][g]
  final long[][] wn; // [e][node]
  final boolean uniform;
  final long unit;
  final long[][] wu; // [e][g], uniform rule only
  final List<Special> specials = new ArrayList<>();
  private final List<Special>[] specialsOf;
  final int[] coA, coB;
  final long[] coC;
  final boolean hasAffinity;

  LayerObjective(int experts, int gpus, int nodes, int slots, int[] cnt, List<LayerModel.Neighbor> neighbors, PairCounts coact,
      CpSatTuning tuning) {
    this.experts = experts;
    this.gpus = gpus;
    this.nodes = nodes;
    this.spg = slots / gpus;
    this.gpn = gpus / nodes;
    this.cnt = cnt;
    this.tuning = tuning;
    wg = new long[experts][gpus];
    wn = new long[experts][nodes];
    uniform = tuning.uniformReplicaChoice();
    unit = uniform ? UNIFORM_UNIT : 1;
    long constant = 0;
    wu = new long[uniform ? experts : 0][gpus];
    long gw = tuning.gpuWeight(), nw = tuning.nodeWeight();
    boolean any = false;
    if (uniform) {
      double[][] acc = new double[experts][gpus];
      for (LayerModel.Neighbor nb : neighbors) {
        if (nb.pairs() == null) continue;
        int[] cx = new int[experts];
        for (int x : nb.row()) cx[x]++;
        double[][] sg = new double[experts][gpus];
        double[][] sn = new double[experts][nodes];
        for (int p = 0; p < slots; p++) {
          int x = nb.row()[p];
          sg[x][p / spg] += 1.0 / cx[x];
          sn[x][p / spg / gpn] += 1.0 / cx[x];
        }
        PairCounts pc = nb.pairs();
        for (int i = 0; i < pc.size(); i++) {
          int e = nb.currentIsTo() ? pc.to()[i] : pc.from()[i];
          int x = nb.currentIsTo() ? pc.from()[i] : pc.to()[i];
          long c = pc.count()[i];
          if (c == 0) continue;
          any = true;
          constant += c * (gw + nw) * unit;
          for (int g = 0; g < gpus; g++) acc[e][g] += c * (gw * sg[x][g] + nw * sn[x][g / gpn]) / cnt[e];
        }
      }
      for (int e = 0; e < experts; e++) for (int g = 0; g < gpus; g++) wu[e][g] = Math.round(acc[e][g] * unit);
      // rounding may leave the per-layer constant a few units above the best gain: harmless
    }
    for (LayerModel.Neighbor nb : uniform ? List.<LayerModel.Neighbor>of() : neighbors) {
      if (nb.pairs() == null) continue;
      boolean[][] gp = PlanMetrics.gpuPresence(nb.row(), experts, gpus);
      boolean[][] np = PlanMetrics.nodePresence(gp, nodes);
      int[] ng = new int[experts];
      for (int x = 0; x < experts; x++) for (int g = 0; g < gpus; g++) if (gp[x][g]) ng[x]++;
      PairCounts pc = nb.pairs();
      for (int i = 0; i < pc.size(); i++) {
        int e = nb.currentIsTo() ? pc.to()[i] : pc.from()[i];
        int x = nb.currentIsTo() ? pc.from()[i] : pc.to()[i];
        long c = pc.count()[i];
        if (c == 0) continue;
        any = true;
        constant += c * (gw + nw);
        if (cnt[e] > 1 && ng[x] > 1) {
          specials.add(new Special(e, gp[x], np[x], c));
        } else {
          for (int g = 0; g < gpus; g++) if (gp[x][g]) wg[e][g] += c * gw;
          for (int k = 0; k < nodes; k++) if (np[x][k]) wn[e][k] += c * nw;
        }
      }
    }
    // co-activation: the heaviest pairs whose experts both have a single replica (exact with one index each)
    List<int[]> keep = new ArrayList<>();
    if (coact != null && tuning.coactPairs() > 0 && (tuning.coactGpuWeight() > 0 || tuning.coactNodeWeight() > 0)) {
      Integer[] idx = new Integer[coact.size()];
      for (int i = 0; i < idx.length; i++) idx[i] = i;
      Arrays.sort(idx, (a, b) -> Long.compare(coact.count()[b], coact.count()[a]));
      for (int i : idx) {
        if (keep.size() >= tuning.coactPairs()) break;
        int a = coact.from()[i], b = coact.to()[i];
        if (a == b || cnt[a] != 1 || cnt[b] != 1 || coact.count()[i] == 0) continue;
        keep.add(new int[] {a, b, i});
      }
    }
    coA = new int[keep.size()];
    coB = new int[keep.size()];
    coC = new long[keep.size()];
    for (int i = 0; i < keep.size(); i++) {
      coA[i] = keep.get(i)[0];
      coB[i] = keep.get(i)[1];
      coC[i] = coact.count()[keep.get(i)[2]] * unit;
      constant += coC[i] * (tuning.coactGpuWeight() + tuning.coactNodeWeight());
      any = true;
    }
    hasAffinity = any;
    constCost = constant;
    @SuppressWarnings("unchecked")
    List<Special>[] of = new List[experts];
    for (int e = 0; e < experts; e++) of[e] = new ArrayList<>();
    for (Special s : specials) of[s.e()].add(s);
    specialsOf = of;
  }

  /** What a single-replica expert e earns on GPU g (its GPU and its node terms). */
  long presenceGain(int e, int g) {
    return wg[e][g] + wn[e][g / gpn];
  }

  /**
   * What e earns on GPU g as if g were its only GPU, uniform terms aside: the linear weight of
   * moving it there, exact for single-replica experts.
   */
  long linearGain(int e, int g) {
    long s = presenceGain(e, g);
    for (Special x : specialsOf[e]) {
      if (x.gmask()[g]) s += x.c() * tuning.gpuWeight();
      if (x.nmask()[g / gpn]) s += x.c() * tuning.nodeWeight();
    }
    return s;
  }

  /** The transition terms e earns with {@code ne[g]} replicas on each GPU g. */
  long expertGain(int e, int[] ne) {
    long s = 0;
    if (uniform) for (int g = 0; g < gpus; g++) s += ne[g] * wu[e][g];
    boolean[] node = new boolean[nodes];
    for (int g = 0; g < gpus; g++) {
      if (ne[g] > 0) {
        s += wg[e][g];
        node[g / gpn] = true;
      }
    }
    for (int k = 0; k < nodes; k++) if (node[k]) s += wn[e][k];
    for (Special x : specialsOf[e]) {
      boolean hg = false, hn = false;
      for (int g = 0; g < gpus; g++) {
        if (ne[g] > 0) {
          hg |= x.gmask()[g];
          hn |= x.nmask()[g / gpn];
        }
      }
      if (hg) s += x.c() * tuning.gpuWeight();
      if (hn) s += x.c() * tuning.nodeWeight();
    }
    return s;
  }

  /** The co-activation terms earned when each single-replica expert e sits on GPU {@code gpuOf[e]}. */
  long coactGain(int[] gpuOf) {
    long s = 0;
    for (int i = 0; i < coA.length; i++) {
      if (gpuOf[coA[i]] == gpuOf[coB[i]]) s += coC[i] * tuning.coactGpuWeight();
      if (gpuOf[coA[i]] / gpn == gpuOf[coB[i]] / gpn) s += coC[i] * tuning.coactNodeWeight();
    }
    return s;
  }

  /** Exact cost of a row with replica counts {@code n[e][g]}, in weighted tokens (units under the uniform rule). */
  long cost(int[] row, int[][] n) {
    long local = 0;
    for (int e = 0; e < experts; e++) local += expertGain(e, n[e]);
    int[] gpuOf = new int[experts];
    for (int p = 0; p < row.length; p++) gpuOf[row[p]] = p / spg;
    return constCost - local - coactGain(gpuOf);
  }

  /**
   * A valid lower bound on {@link #cost} that needs no solver: every expert takes its best GPUs
   * (its replica count of them) and best nodes regardless of capacity and balance; replicated pairs
   * and co-activation pairs count as local.
   */
  long relaxedBound() {
    long gain = 0;
    for (int e = 0; e < experts; e++) {
      if (cnt[e] == 1) {
        long best = 0;
        for (int g = 0; g < gpus; g++) best = Math.max(best, presenceGain(e, g));
        gain += best;
      } else {
        long[] a = wg[e].clone();
        Arrays.sort(a);
        for (int i = 0; i < Math.min(cnt[e], gpus); i++) gain += a[gpus - 1 - i];
        long[] b = wn[e].clone();
        Arrays.sort(b);
        for (int i = 0; i < Math.min(cnt[e], nodes); i++) gain += b[nodes - 1 - i];
      }
    }
    for (Special s : specials) gain += s.c() * (tuning.gpuWeight() + tuning.nodeWeight());
    if (uniform) {
      for (int e = 0; e < experts; e++) {
        long best = 0;
        for (int g = 0; g < gpus; g++) best = Math.max(best, wu[e][g]);
        gain += cnt[e] * best;
      }
    }
    for (long c : coC) gain += c * (tuning.coactGpuWeight() + tuning.coactNodeWeight());
    return Math.max(0, constCost - gain);
  }
}
