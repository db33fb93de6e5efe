package io.moeyard.placement.ilp;

import com.google.ortools.sat.BoolVar;
import com.google.ortools.sat.CpModel;
import com.google.ortools.sat.CpSolver;
import com.google.ortools.sat.CpSolverStatus;
import com.google.ortools.sat.IntVar;
import com.google.ortools.sat.LinearExpr;
import com.google.ortools.sat.LinearExprBuilder;
import io.moeyard.placement.model.PairCounts;
import java.util.List;

/**
 * One layer's sub-problem: the replica counts are fixed, the neighbouring layers (if any) are fixed;
 * decide how many replicas of each expert each GPU holds. See package-info for the formulation.
 */
final class LayerModel {
  /** Scaled mean GPU load of every workload: loads are normalised so that a perfect layer has max = MEAN. */
  static final long MEAN = 1_000_000L;

  /** A fixed neighbouring layer and the pairs between it and this one. */
  record Neighbor(int[] row, PairCounts pairs, boolean currentIsTo) {}

  /** Outcome of one CP-SAT solve. */
  record Result(int[] row, double objective, double bound, String status) {}

  final int experts, gpus, nodes, slots, spg, gpn;
  final int[] cnt;
  /** Scaled load per replica, {@code [w][e]}; a workload without load has an all-zero row. */
  final long[][] q;
  /** The loads and scale behind {@link #q}, for rows with other replica counts. */
  private final double[][] loadsW;
  private final double[] scale;
  private final CpSatTuning tuning;

  /** The affinity cost this layer's placement is judged by. */
  final LayerObjective objective;
  final boolean hasAffinity;

  LayerModel(int experts, int gpus, int nodes, int slots, int[] cnt, double[][] loadsW, List<Neighbor> neighbors,
      PairCounts coact, CpSatTuning tuning) {
    this(experts, gpus, nodes, slots, cnt, loadsW, neighbors, coact, tuning, null);
  }

  /**
   * {@code allowance[w]} (null = all 1) divides workload w's scaled loads, so that one cap on the
   * scaled loads allows workload w that many times as much: how each workload gets its own cap.
   */
  LayerModel(int experts, int gpus, int nodes, int slots, int[] cnt, double[][] loadsW, List<Neighbor> neighbors,
      PairCounts coact, CpSatTuning tuning, double[] allowance) {
    this.experts = experts;
    this.gpus = gpus;
    this.nodes = nodes;
    this.slots = slots;
    this.spg = slots / gpus;
    this.gpn = gpus / nodes;
    this.cnt = cnt;
    this.tuning = tuning;
    this.q = new long[loadsW.length][experts];
    this.loadsW = loadsW;
    this.scale = new double[loadsW.length];
    for (int w = 0; w < loadsW.length; w++) {
      double total = 0;
      for (double v : loadsW[w]) total += v;
      if (total <= 0) continue;
      scale[w] = (double) MEAN * gpus / total / (allowance == null ? 1 : allowance[w]);
      for (int e = 0; e < experts; e++) q[w][e] = Math.round(loadsW[w][e] / cnt[e] * scale[w]);
    }
    this.objective = new LayerObjective(experts, gpus, nodes, slots, cnt, neighbors, coact, tuning);
    this.hasAffinity = objective.hasAffinity;
  }

  /** Replica count matrix {@code [e][g]} of a row. */
  int[][] counts(int[] row) {
    int[][] n = new int[experts][gpus];
    for (int p = 0; p < slots; p++) n[row[p]][p / spg]++;
    return n;
  }

  /**
   * {@link #maxScaledLoad} of a row whose replica counts may differ from the model's (the warm
   * start's row, when the model's counts were chosen for locality), with the same rounding.
   */
  long maxScaledLoadOwnCounts(int[] row) {
    int[] c = CpSatPlanner.countsOf(row, experts);
    long max = 0;
    for (int w = 0; w < loadsW.length; w++) {
      long[] g = new long[gpus];
      if (scale[w] > 0) for (int p = 0; p < slots; p++) g[p / spg] += Math.round(loadsW[w][row[p]] / c[row[p]] * scale[w]);
      for (long v : g) max = Math.max(max, v);
    }
    return max;
  }

  /** Worst over workloads and GPUs of the scaled GPU load (MEAN = perfect balance). */
  long maxScaledLoad(int[] row) {
    long max = 0;
    for (long[] qw : q) {
      long[] g = new long[gpus];
      for (int p = 0; p < slots; p++) g[p / spg] += qw[row[p]];
      for (long v : g) max = Math.max(max, v);
    }
    return max;
  }

  /** Exact affinity cost of a row (what the CP-SAT objective measures), in weighted tokens. */
  long cost(int[] row) {
    return objective.cost(row, counts(row));
  }

  /**
   * Relabels the GPUs of a row (moves whole GPU contents, so every load stays the same) to maximise
   * the linear affinity weights: a linear assignment problem, solved exactly for single-replica experts.
   */
  int[] relabel(int[] row) {
    if (!hasAffinity) return row.clone();
    long[][] score = new long[gpus][gpus];
    if (objective.uniform) {
      for (int h = 0; h < gpus; h++) {
        for (int j = 0; j < spg; j++) {
          int e = row[h * spg + j];
          for (int g = 0; g < gpus; g++) score[h][g] += objective.wu[e][g];
        }
      }
    }
    for (int h = 0; h < gpus; h++) {
      for (int j = 0; j < spg; j++) {
        int e = row[h * spg + j];
        boolean dup = false;
        for (int i = 0; i < j; i++) dup |= row[h * spg + i] == e;
        if (dup) continue;
        for (int g = 0; g < gpus; g++) score[h][g] += objective.linearGain(e, g);
      }
    }
    int[] assign = Hungarian.maximize(score);
    int[] out = new int[slots];
    for (int h = 0; h < gpus; h++) System.arraycopy(row, h * spg, out, assign[h] * spg, spg);
    // keep whichever is better under the exact cost (co-activation across nodes is not in the scores)
    return cost(out) <= cost(row) ? out : row.clone();
  }

  /** {@link LayerObjective#relaxedBound}. */
  long relaxedBound() {
    return objective.relaxedBound();
  }

  /**
   * Pairwise-swap local search on the transition terms, keeping every workload's scaled GPU load at
   * or under {@code cap}: first-improvement descent in random order, then iterated (kick the best
   * row with {@link #KICK_SWAPS} random feasible swaps, descend again, keep the better) until the
   * deadline. Returns a row never worse under {@link #cost} than {@code start}.
   */
  int[] localSearch(int[] start, long cap, long deadlineNanos, long seed) {
    if (!hasAffinity) return start.clone();
    java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
    int[] best = descend(start, cap, deadlineNanos, rnd);
    long bestCost = cost(best);
    // iterated local search: kick the best row with a few random feasible swaps, descend again
    while (System.nanoTime() < deadlineNanos) {
      int[] cand = best.clone();
      kick(cand, cap, rnd, KICK_SWAPS);
      cand = descend(cand, cap, deadlineNanos, rnd);
      long c = cost(cand);
      if (c < bestCost) {
        best = cand;
        bestCost = c;
      }
    }
    return bestCost <= cost(start) ? best : start.clone();
  }

  /** Random swaps per iterated-local-search kick. */
  static final int KICK_SWAPS = 4;

  private void kick(int[] row, long cap, java.util.SplittableRandom rnd, int swaps) {
    int W = q.length;
    long[][] load = new long[W][gpus];
    for (int w = 0; w < W; w++) for (int p = 0; p < slots; p++) load[w][p / spg] += q[w][row[p]];
    for (int done = 0, tries = 0; done < swaps && tries < 100 * swaps; tries++) {
      int p1 = rnd.nextInt(slots), p2 = rnd.nextInt(slots);
      int g1 = p1 / spg, g2 = p2 / spg;
      int e1 = row[p1], e2 = row[p2];
      if (g1 == g2 || e1 == e2) continue;
      boolean ok = true;
      for (int w = 0; w < W && ok; w++) {
        long d = q[w][e2] - q[w][e1];
        ok = load[w][g1] + d <= cap && load[w][g2] - d <= cap;
      }
      if (!ok) continue;
      row[p1] = e2;
      row[p2] = e1;
      for (int w = 0; w < W; w++) {
        long d = q[w][e2] - q[w][e1];
        load[w][g1] += d;
        load[w][g2] -= d;
      }
      done++;
    }
  }

  /** First-improvement swap descent from {@code start} (see {@link #localSearch}). */
  private int[] descend(int[] start, long cap, long deadlineNanos, java.util.SplittableRandom rnd) {
    int[] row = start.clone();
    int[][] n = counts(row);
    int W = q.length;
    long[][] load = new long[W][gpus];
    for (int w = 0; w < W; w++) for (int p = 0; p < slots; p++) load[w][p / spg] += q[w][row[p]];
    long[] gain = new long[experts];
    for (int e = 0; e < experts; e++) gain[e] = objective.expertGain(e, n[e]);
    int[] order = new int[slots];
    for (int i = 0; i < slots; i++) order[i] = i;
    boolean improved = true;
    int passes = 0;
    while (improved && System.nanoTime() < deadlineNanos) {
      improved = false;
      passes++;
      for (int i = slots - 1; i > 0; i--) {
        int j = rnd.nextInt(i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      for (int ii = 0; ii < slots; ii++) {
        if ((ii & 15) == 0 && System.nanoTime() >= deadlineNanos) break;
        int p1 = order[ii];
        int g1 = p1 / spg;
        for (int p2 = 0; p2 < slots; p2++) {
          int g2 = p2 / spg;
          if (g2 == g1) continue;
          int e1 = row[p1], e2 = row[p2];
          if (e1 == e2) continue;
          boolean ok = true;
          for (int w = 0; w < W && ok; w++) {
            long d = q[w][e2] - q[w][e1];
            ok = load[w][g1] + d <= cap && load[w][g2] - d <= cap;
          }
          if (!ok) continue;
          long before = gain[e1] + gain[e2];
          long a1, a2;
          if (objective.uniform) {
            long[][] wu = objective.wu;
            a1 = gain[e1] - wu[e1][g1] + wu[e1][g2];
            a2 = gain[e2] - wu[e2][g2] + wu[e2][g1];
            if (a1 + a2 <= before) continue;
            n[e1][g1]--;
            n[e1][g2]++;
            n[e2][g2]--;
            n[e2][g1]++;
          } else if (cnt[e1] == 1 && cnt[e2] == 1) {
            // single replicas: the gain is a table lookup, no need to touch the counts unless we swap
            a1 = objective.presenceGain(e1, g2);
            a2 = objective.presenceGain(e2, g1);
            if (a1 + a2 <= before) continue;
            n[e1][g1]--;
            n[e1][g2]++;
            n[e2][g2]--;
            n[e2][g1]++;
          } else {
            n[e1][g1]--;
            n[e1][g2]++;
            n[e2][g2]--;
            n[e2][g1]++;
            a1 = cnt[e1] == 1 ? objective.presenceGain(e1, g2) : objective.expertGain(e1, n[e1]);
            a2 = cnt[e2] == 1 ? objective.presenceGain(e2, g1) : objective.expertGain(e2, n[e2]);
          }
          if (a1 + a2 > before) {
            gain[e1] = a1;
            gain[e2] = a2;
            row[p1] = e2;
            row[p2] = e1;
            for (int w = 0; w < W; w++) {
              long d = q[w][e2] - q[w][e1];
              load[w][g1] += d;
              load[w][g2] -= d;
            }
            improved = true;
            break;
          }
          n[e1][g1]++;
          n[e1][g2]--;
          n[e2][g2]++;
          n[e2][g1]--;
        }
      }
    }
    // normalise slot order within GPUs
    for (int g = 0; g < gpus; g++) java.util.Arrays.sort(row, g * spg, (g + 1) * spg);
    return row;
  }

  /**
   * Solves the layer. {@code minimizeMax}: objective is the worst scaled GPU load (balance only);
   * otherwise the affinity cost, with every workload's scaled GPU load capped at {@code cap}.
   */
  Result solve(int[] hint, boolean minimizeMax, long cap, double seconds, int workers, int seed) {
    CpModel m = new CpModel();
    int[][] hn = counts(hint);
    IntVar[][] n = new IntVar[experts][gpus];
    BoolVar[][] y = new BoolVar[experts][gpus];
    for (int e = 0; e < experts; e++) {
      if (cnt[e] == 1) {
        for (int g = 0; g < gpus; g++) {
          y[e][g] = m.newBoolVar("y");
          n[e][g] = y[e][g];
        }
        m.addExactlyOne(y[e]);
      } else {
        int ub = Math.min(cnt[e], spg);
        for (int g = 0; g < gpus; g++) {
          n[e][g] = m.newIntVar(0, ub, "n");
          y[e][g] = m.newBoolVar("y");
          m.addLessOrEqual(y[e][g], n[e][g]);
          m.addLessOrEqual(n[e][g], LinearExpr.term(y[e][g], ub));
        }
        m.addEquality(LinearExpr.sum(n[e]), cnt[e]);
      }
    }
    for (int g = 0; g < gpus; g++) {
      IntVar[] col = new IntVar[experts];
      for (int e = 0; e < experts; e++) col[e] = n[e][g];
      m.addEquality(LinearExpr.sum(col), spg);
    }
    long hintMax = maxScaledLoad(hint);
    IntVar maxVar = null;
    if (minimizeMax) {
      long ub = 0;
      for (long[] qw : q) {
        long s = 0;
        for (int e = 0; e < experts; e++) s += qw[e] * cnt[e];
        ub = Math.max(ub, s);
      }
      maxVar = m.newIntVar(0, Math.max(ub, hintMax), "max");
      m.addHint(maxVar, hintMax);
    }
    for (long[] qw : q) {
      boolean zero = true;
      for (long v : qw) zero &= v == 0;
      if (zero) continue;
      for (int g = 0; g < gpus; g++) {
        IntVar[] col = new IntVar[experts];
        for (int e = 0; e < experts; e++) col[e] = n[e][g];
        LinearExpr load = LinearExpr.weightedSum(col, qw);
        if (minimizeMax) m.addLessOrEqual(load, maxVar);
        else m.addLessOrEqual(load, cap);
      }
    }
    // hints for placement variables
    for (int e = 0; e < experts; e++) {
      for (int g = 0; g < gpus; g++) {
        if (cnt[e] == 1) {
          m.addHint(y[e][g], hn[e][g] > 0);
        } else {
          m.addHint(n[e][g], hn[e][g]);
          m.addHint(y[e][g], hn[e][g] > 0);
        }
      }
    }
    if (minimizeMax) {
      m.minimize(maxVar);
    } else {
      LayerObjective o = objective;
      long[][] wg = o.wg, wn = o.wn, wu = o.wu;
      int[] coA = o.coA, coB = o.coB;
      long[] coC = o.coC;
      LinearExprBuilder obj = LinearExpr.newBuilder();
      obj.add(o.constCost);
      if (o.uniform) {
        for (int e = 0; e < experts; e++) for (int g = 0; g < gpus; g++) if (wu[e][g] != 0) obj.addTerm(n[e][g], -wu[e][g]);
      }
      BoolVar[][] u = new BoolVar[experts][];
      for (int e = 0; e < experts; e++) {
        if (cnt[e] == 1) {
          for (int g = 0; g < gpus; g++) {
            long c = o.presenceGain(e, g);
            if (c != 0) obj.addTerm(y[e][g], -c);
          }
        } else {
          for (int g = 0; g < gpus; g++) if (wg[e][g] != 0) obj.addTerm(y[e][g], -wg[e][g]);
          u[e] = new BoolVar[nodes];
          for (int k = 0; k < nodes; k++) {
            u[e][k] = m.newBoolVar("u");
            BoolVar[] ys = new BoolVar[gpn];
            boolean present = false;
            for (int j = 0; j < gpn; j++) {
              ys[j] = y[e][k * gpn + j];
              present |= hn[e][k * gpn + j] > 0;
            }
            m.addLessOrEqual(u[e][k], LinearExpr.sum(ys));
            m.addHint(u[e][k], present);
            if (wn[e][k] != 0) obj.addTerm(u[e][k], -wn[e][k]);
          }
        }
      }
      for (LayerObjective.Special s : o.specials) {
        BoolVar zg = m.newBoolVar("zg");
        BoolVar zn = m.newBoolVar("zn");
        LinearExprBuilder sg = LinearExpr.newBuilder();
        LinearExprBuilder sn = LinearExpr.newBuilder();
        boolean hg = false, hnode = false;
        for (int g = 0; g < gpus; g++) {
          if (s.gmask()[g]) {
            sg.add(y[s.e()][g]);
            hg |= hn[s.e()][g] > 0;
          }
        }
        for (int k = 0; k < nodes; k++) {
          if (s.nmask()[k]) {
            sn.add(u[s.e()][k]);
            for (int j = 0; j < gpn; j++) hnode |= hn[s.e()][k * gpn + j] > 0;
          }
        }
        m.addLessOrEqual(zg, sg);
        m.addLessOrEqual(zn, sn);
        m.addHint(zg, hg);
        m.addHint(zn, hnode);
        obj.addTerm(zg, -s.c() * tuning.gpuWeight());
        obj.addTerm(zn, -s.c() * tuning.nodeWeight());
      }
      if (coA.length > 0) {
        IntVar[] gpuIdx = new IntVar[experts];
        IntVar[] nodeIdx = new IntVar[experts];
        long[] gi = new long[gpus], ni = new long[gpus];
        for (int g = 0; g < gpus; g++) {
          gi[g] = g;
          ni[g] = g / gpn;
        }
        int[] hintGpu = new int[experts];
        for (int p = 0; p < slots; p++) hintGpu[hint[p]] = p / spg;
        for (int i = 0; i < coA.length; i++) {
          for (int e : new int[] {coA[i], coB[i]}) {
            if (gpuIdx[e] != null) continue;
            gpuIdx[e] = m.newIntVar(0, gpus - 1, "gi");
            nodeIdx[e] = m.newIntVar(0, nodes - 1, "ni");
            m.addEquality(gpuIdx[e], LinearExpr.weightedSum(y[e], gi));
            m.addEquality(nodeIdx[e], LinearExpr.weightedSum(y[e], ni));
            m.addHint(gpuIdx[e], hintGpu[e]);
            m.addHint(nodeIdx[e], hintGpu[e] / gpn);
          }
          int a = coA[i], b = coB[i];
          if (tuning.coactGpuWeight() > 0) {
            BoolVar qg = m.newBoolVar("qg");
            m.addEquality(gpuIdx[a], gpuIdx[b]).onlyEnforceIf(qg);
            m.addHint(qg, hintGpu[a] == hintGpu[b]);
            obj.addTerm(qg, -coC[i] * tuning.coactGpuWeight());
          }
          if (tuning.coactNodeWeight() > 0) {
            BoolVar qn = m.newBoolVar("qn");
            m.addEquality(nodeIdx[a], nodeIdx[b]).onlyEnforceIf(qn);
            m.addHint(qn, hintGpu[a] / gpn == hintGpu[b] / gpn);
            obj.addTerm(qn, -coC[i] * tuning.coactNodeWeight());
          }
        }
      }
      m.minimize(obj);
    }
    CpSolver solver = new CpSolver();
    solver.getParameters().setMaxTimeInSeconds(Math.max(0.01, seconds));
    solver.getParameters().setNumWorkers(workers);
    solver.getParameters().setRandomSeed(seed);
    solver.getParameters().setLogSearchProgress(false);
    CpSolverStatus status = solver.solve(m);
    if (status != CpSolverStatus.OPTIMAL && status != CpSolverStatus.FEASIBLE) {
      return new Result(null, Double.NaN, Double.NaN, status.name());
    }
    int[] row = new int[slots];
    int[] fill = new int[gpus];
    for (int e = 0; e < experts; e++) {
      for (int g = 0; g < gpus; g++) {
        long v = solver.value(n[e][g]);
        for (long r = 0; r < v; r++) row[g * spg + fill[g]++] = e;
      }
    }
    for (int g = 0; g < gpus; g++) {
      if (fill[g] != spg) throw new IllegalStateException("CP-SAT returned GPU " + g + " with " + fill[g] + " slots, expected " + spg);
    }
    return new Result(row, solver.objectiveValue(), solver.bestObjectiveBound(), status.name());
  }
}
