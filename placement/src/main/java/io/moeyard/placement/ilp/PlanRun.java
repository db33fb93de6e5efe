package io.moeyard.placement.ilp;

import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;
import java.util.Arrays;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * One run of the CP-SAT planner, step by step: the per-layer inputs (loads, replica counts, the
 * rows hints come from), a forward pass that places each layer against the one before it, a
 * fallback to the warm start when it is better as a whole, refinement sweeps with both neighbours
 * fixed, and the report (objective and a valid bound). The fields are the state the steps hand on.
 */
final class PlanRun {
  private final PlacementProblem problem;
  private final CpSatOptions options;
  private final CpSatTuning tuning;
  private final Consumer<String> progress;
  private final int workers;
  private final int L, E, G, N, P;
  private final boolean robust, perWorkloadCaps;
  private final long t0, deadline;

  /** Per layer: {@code [W][E]} loads, replica counts, the row hints come from, the warm start's row. */
  private final double[][][] loads;
  private final int[][] cnt, base, warmRows;
  private final Placement warm;
  /** Per layer and workload: how much more load that workload may carry (null: one cap for all). */
  private final double[][] allowance;
  /** Whether any layer has affinity terms (transitions or modelled co-activation). */
  private final boolean affinity;

  /** The plan as it improves, and what the forward pass found per layer. */
  private final int[][] rows;
  private int[][] forward;
  private final double[] layerObj, layerBound;
  private final String[] layerStatus;
  private final boolean[] layerAffinity;
  private final long[] caps;
  /** False once CP-SAT found nothing in several layers in a row: swap search only from then on. */
  private boolean cpSat = true;
  private int sweeps;

  PlanRun(PlacementProblem problem, Placement warmStart, CpSatOptions options, CpSatTuning tuning, boolean perWorkloadCaps,
      int[][] altBase, long t0) {
    this.problem = problem;
    this.options = options;
    this.tuning = tuning;
    this.perWorkloadCaps = perWorkloadCaps;
    this.t0 = t0;
    this.workers = options.workers() == 0 ? Runtime.getRuntime().availableProcessors() : options.workers();
    this.progress = options.progress() == null ? s -> {} : options.progress();
    L = problem.layers();
    E = problem.experts();
    G = problem.gpus();
    N = problem.nodes();
    P = problem.slots();
    int W = problem.loads().length;
    robust = W > 1 && !perWorkloadCaps;
    // leave time for the final checks and the bound (they build one model per layer)
    double reserve = Math.min(0.15 * options.timeLimitSeconds(), 0.03 * options.timeLimitSeconds() + 0.02 * problem.layers());
    deadline = t0 + (long) ((options.timeLimitSeconds() - reserve) * 1e9);

    loads = new double[L][W][];
    warmRows = new int[L][];
    cnt = new int[L][];
    base = new int[L][];
    for (int l = 0; l < L; l++) {
      for (int w = 0; w < W; w++) loads[l][w] = problem.loads()[w][l];
      double[][] norm = ReplicaGreedy.normalise(loads[l]);
      if (warmStart != null) {
        warmRows[l] = warmStart.phy2log()[l].clone();
      } else {
        double[][] sum = new double[1][E];
        for (double[] nw : norm) for (int e = 0; e < E; e++) sum[0][e] += nw[e];
        warmRows[l] = ReplicaGreedy.pack(sum, ReplicaGreedy.replicaCounts(sum, E, P), G, P);
      }
      if (robust && tuning.robustReplication()) {
        cnt[l] = ReplicaGreedy.replicaCounts(norm, E, P);
        base[l] = ReplicaGreedy.pack(norm, cnt[l], G, P);
      } else {
        cnt[l] = new int[E];
        for (int e : warmRows[l]) cnt[l][e]++;
        base[l] = warmRows[l];
      }
    }
    warm = new Placement(E, G, warmRows);
    if (altBase != null) {
      for (int l = 0; l < L; l++) {
        if (altBase[l] == null) continue;
        base[l] = altBase[l];
        cnt[l] = CpSatPlanner.countsOf(altBase[l], E);
      }
    }
    // per-workload caps: scale each workload so that the warm start's max GPU load is the same for all
    allowance = new double[L][];
    if (perWorkloadCaps) {
      for (int l = 0; l < L; l++) {
        allowance[l] = new double[W];
        double ref = 1 / PlanMetrics.balancedness(warmRows[l], G, loads[l][0]);
        for (int w = 0; w < W; w++) allowance[l][w] = (1 / PlanMetrics.balancedness(warmRows[l], G, loads[l][w])) / ref;
      }
    }
    affinity = problem.hasAffinity() || CpSatPlanner.hasCoact(problem, tuning);
    rows = new int[L][];
    layerObj = new double[L];
    layerBound = new double[L];
    layerStatus = new String[L];
    layerAffinity = new boolean[L];
    caps = new long[L];
  }

  /** Each layer in turn against the previous one as placed, in the time the refinement leaves. */
  void forwardPass() {
    double passEnd = tuning.refineFraction() > 0 && affinity ? 1 - tuning.refineFraction() : 1;
    long fwdDeadline = t0 + (long) ((deadline - t0) * passEnd);
    int unknownRun = 0;
    for (int l = 0; l < L; l++) {
      LayerModel model = new LayerModel(E, G, N, P, cnt[l], loads[l], CpSatPlanner.neighbours(problem, rows, l, false),
          CpSatPlanner.coact(problem, l), tuning, allowance[l]);
      double budget = Math.max(0, (fwdDeadline - System.nanoTime()) / 1e9 / (L - l));
      CpSatPlanner.LayerOutcome out = CpSatPlanner.solveLayer(model, base[l], warmRows[l], robust, !perWorkloadCaps, tuning, budget,
          workers, options.seed() + l, cpSat);
      if (model.hasAffinity) unknownRun = out.status().endsWith("UNKNOWN") ? unknownRun + 1 : 0;
      if (cpSat && unknownRun >= 3) {
        cpSat = false;
        progress.accept("ilp: CP-SAT found no solution in 3 layers' share of the time in a row; swap search only from here on");
      }
      rows[l] = out.row();
      layerAffinity[l] = model.hasAffinity;
      caps[l] = out.cap();
      layerObj[l] = out.objective();
      layerBound[l] = out.bound();
      layerStatus[l] = out.status();
      progress.accept(String.format(Locale.ROOT, "ilp layer %d/%d: %s objective %.6g bound %.6g (hint %.6g) %.2fs elapsed",
          l + 1, L, out.status(), out.objective(), out.bound(), out.hintObjective(), (System.nanoTime() - t0) / 1e9));
    }
    forward = new int[L][];
    for (int l = 0; l < L; l++) forward[l] = rows[l].clone();
  }

  /**
   * The forward pass re-places layer by layer; should the warm start still be better as a whole,
   * refinement starts from it instead (same replica counts).
   */
  void keepWarmStartIfBetter() {
    if (!affinity || (robust && tuning.robustReplication())) return;
    long fwdCost = CpSatPlanner.totalCost(problem, rows, cnt, tuning), warmCost = CpSatPlanner.totalCost(problem, warmRows, null, tuning);
    if (warmCost < fwdCost) {
      progress.accept("ilp: the warm start (cost " + warmCost + ") beats the forward pass (" + fwdCost + "); refining the warm start");
      for (int l = 0; l < L; l++) {
        rows[l] = warmRows[l].clone();
        cnt[l] = CpSatPlanner.countsOf(rows[l], E);
      }
    }
  }

  /**
   * Refinement sweeps: each layer again with both neighbours fixed (only the affinity cost moves),
   * swap local search then CP-SAT; each sweep takes half of the time left, so several run.
   */
  void refine() {
    if (!affinity) return;
    while (System.nanoTime() < deadline - 50_000_000L) {
      long before = CpSatPlanner.totalCost(problem, rows, cnt, tuning);
      long now = System.nanoTime();
      long sweepEnd = deadline - now < 2_000_000_000L ? deadline : now + (deadline - now) / 2;
      for (int l = 0; l < L && System.nanoTime() < deadline - 50_000_000L; l++) {
        LayerModel model = new LayerModel(E, G, N, P, cnt[l], loads[l], CpSatPlanner.neighbours(problem, rows, l, true),
            CpSatPlanner.coact(problem, l), tuning, allowance[l]);
        if (!model.hasAffinity) continue;
        double budget = Math.max(0, (sweepEnd - System.nanoTime()) / 1e9 / (L - l));
        long cap = Math.max(caps[l], model.maxScaledLoad(rows[l]));
        long ts = System.nanoTime();
        long seed = options.seed() + 1000L * (sweeps + 1) + l;
        double lsShare = cpSat ? CpSatPlanner.LOCAL_SEARCH_SHARE : 1.0;
        rows[l] = model.localSearch(rows[l], cap, ts + (long) (Math.max(budget * lsShare, 0.005) * 1e9), seed);
        budget -= (System.nanoTime() - ts) / 1e9;
        if (!cpSat || budget <= 0.05) continue;
        LayerModel.Result r = model.solve(rows[l], false, cap, budget, workers, (int) seed);
        if (r.row() != null && model.cost(r.row()) < model.cost(rows[l]) && model.maxScaledLoad(r.row()) <= cap) {
          rows[l] = r.row();
        }
      }
      sweeps++;
      long after = CpSatPlanner.totalCost(problem, rows, cnt, tuning);
      progress.accept(String.format(Locale.ROOT, "ilp refine sweep %d: cost %d -> %d, %.2fs elapsed",
          sweeps, before, after, (System.nanoTime() - t0) / 1e9));
      if (after >= before) break;
    }
  }

  /** The plan (the warm start when ours is worse or breaks the balance cap), its objective and a valid bound. */
  PlanReport report() {
    Placement plan = new Placement(E, G, rows);
    double objective, bound;
    String status = CpSatPlanner.aggregateStatus(layerStatus);
    if (affinity) {
      long ours = CpSatPlanner.totalCost(problem, rows, cnt, tuning);
      long theirs = CpSatPlanner.totalCost(problem, warmRows, null, tuning);
      if (ours > theirs || !CpSatPlanner.balanceHolds(problem, plan, warm, tuning, robust)) {
        plan = warm;
        ours = theirs;
        status = "WARM_START";
      }
      double unit = tuning.uniformReplicaChoice() ? LayerObjective.UNIFORM_UNIT : 1;
      objective = ours / unit;
      bound = Math.min(affinityBound(plan) / unit, objective);
    } else {
      objective = 0;
      bound = 0;
      for (int l = 0; l < L; l++) {
        objective += layerObj[l];
        bound += Double.isNaN(layerBound[l]) ? 0 : layerBound[l];
      }
      bound = Math.min(bound, objective);
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    progress.accept(String.format(Locale.ROOT, "ilp done: %s objective %.6g bound %.6g gap %.2f%% in %.2fs%s",
        status, objective, bound, 100 * new PlanReport(plan, objective, bound, status, seconds).gap(), seconds,
        sweeps > 0 ? " (" + sweeps + " refine sweeps)" : ""));
    return new PlanReport(plan, objective, bound, status, seconds);
  }

  /**
   * Per layer: the best cost of its terms with the previous layer as finally placed; CP-SAT's
   * bound where that previous layer did not move after the forward pass, else the relaxed one.
   */
  private double affinityBound(Placement plan) {
    int[][] rowsOut = plan.phy2log();
    double b = 0;
    for (int l = 0; l < L; l++) {
      LayerModel model = new LayerModel(E, G, N, P, CpSatPlanner.countsOf(rowsOut[l], E), new double[1][E],
          CpSatPlanner.neighbours(problem, rowsOut, l, false), CpSatPlanner.coact(problem, l), tuning);
      double lb = model.relaxedBound();
      if (layerAffinity[l] && !Double.isNaN(layerBound[l]) && (l == 0 || Arrays.equals(rowsOut[l - 1], forward[l - 1]))) {
        lb = Math.max(lb, layerBound[l]);
      }
      b += lb;
    }
    return b;
  }
}
