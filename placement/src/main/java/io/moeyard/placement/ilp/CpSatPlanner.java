package io.moeyard.placement.ilp;

import com.google.ortools.Loader;
import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlanReport;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * The CP-SAT planner ({@code --algorithm ilp}): layer-by-layer CP-SAT, warm-started from a given
 * placement (normally EPLB's), never worse than it. See the package documentation for the
 * formulation.
 */
public final class CpSatPlanner {
  private CpSatPlanner() {}

  private static volatile boolean loaded;

  /** Loads the OR-Tools natives once (creating java.io.tmpdir first: the loader fails silently without it). */
  static synchronized void loadNatives() {
    if (loaded) return;
    try {
      Files.createDirectories(Path.of(System.getProperty("java.io.tmpdir")));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create java.io.tmpdir for the OR-Tools natives", e);
    }
    Loader.loadNativeLibraries();
    loaded = true;
  }

  /** Plans with {@link CpSatTuning#defaults()}. */
  public static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options) {
    return plan(problem, warmStart, options, CpSatTuning.defaults());
  }

  /**
   * Plans every layer. {@code warmStart} (normally EPLB's plan on the summed loads) may be null:
   * then a greedy EPLB-like plan is used. The result is never worse than the warm start: per layer,
   * its max GPU load stays within (1 + balanceSlack) of the warm start's (one workload) and its
   * affinity cost is at most the warm start's; with several workloads the worst normalised GPU load
   * is minimised first.
   */
  public static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options, CpSatTuning tuning) {
    return plan(problem, warmStart, options, tuning, false);
  }

  /**
   * Plans for a workload that is none of the traced ones ({@code --robust unseen}): balance is
   * judged on {@code forecast} ({@code [layer][expert]}, see {@code LoadForecast}), and
   * {@code warmStart} should be EPLB's plan on it. The locality terms may move experts only while
   * every GPU load stays within (1 + balanceSlack) of the warm start's, under the forecast and
   * under each traced workload on its own. The forecast is nearly uniform and passes almost any
   * packing; without the traced workloads' caps, on ESFT planned on three tasks, those three tasks'
   * own mean balancedness fell to 0.53-0.61 (EPLB on their sum: 0.68-0.72).
   */
  public static PlanReport planForUnseen(PlacementProblem problem, double[][] forecast, Placement warmStart,
      CpSatOptions options, CpSatTuning tuning) {
    if (warmStart == null) throw new IllegalArgumentException("planning for an unseen workload needs a warm start (EPLB on the forecast)");
    double[][][] loads = new double[problem.loads().length + 1][][];
    loads[0] = forecast;
    System.arraycopy(problem.loads(), 0, loads, 1, problem.loads().length);
    PlacementProblem withForecast = new PlacementProblem(problem.layers(), problem.experts(), problem.gpus(), problem.nodes(),
        problem.slots(), loads, problem.transitions(), problem.coactivations());
    return plan(withForecast, warmStart, options, tuning, true);
  }

  /**
   * Where replica counts chosen for locality are worth more than the warm start's and fit its
   * balance cap ({@link LocalityReplicas}), the plan starts from them on those layers.
   */
  private static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options, CpSatTuning tuning,
      boolean perWorkloadCaps) {
    if (options == null) options = CpSatOptions.defaults();
    if (tuning == null) tuning = CpSatTuning.defaults();
    if (!(options.timeLimitSeconds() > 0)) return planWithCounts(problem, warmStart, options, tuning, perWorkloadCaps, null);
    long t0 = System.nanoTime();
    int[][] alt = localityRows(problem, warmStart, tuning, perWorkloadCaps);
    if (alt == null) return planWithCounts(problem, warmStart, options, tuning, perWorkloadCaps, null);
    int fit = 0;
    for (int[] r : alt) if (r != null) fit++;
    double used = (System.nanoTime() - t0) / 1e9;
    if (options.progress() != null) {
      options.progress().accept(String.format(Locale.ROOT, "ilp: replica counts chosen for locality on %d/%d layers (%.2fs)", fit,
          problem.layers(), used));
    }
    // the time limit is total: choosing the counts comes out of it
    CpSatOptions rest = new CpSatOptions(Math.max(options.timeLimitSeconds() - used, 0.01), options.workers(), options.seed(),
        options.progress());
    PlanReport r = planWithCounts(problem, warmStart, rest, tuning, perWorkloadCaps, alt);
    return new PlanReport(r.placement(), r.objective(), r.bound(), r.status(), r.seconds() + used);
  }

  /** Per layer, a row with replica counts chosen for locality where one fits the cap; null when none does or the mode has no use for it. */
  private static int[][] localityRows(PlacementProblem problem, Placement warmStart, CpSatTuning tuning, boolean perWorkloadCaps) {
    int L = problem.layers(), W = problem.loads().length;
    boolean robust = W > 1 && !perWorkloadCaps;
    if (warmStart == null || robust || !tuning.localityReplicas() || tuning.uniformReplicaChoice() || problem.transitions() == null
        || (tuning.gpuWeight() == 0 && tuning.nodeWeight() == 0)) {
      return null;
    }
    checkShape(problem, warmStart);
    int[][] alt = new int[L][];
    boolean any = false;
    for (int l = 0; l < L; l++) {
      double[][] loads = new double[W][];
      for (int w = 0; w < W; w++) loads[w] = problem.loads()[w][l];
      PairCounts[] nbs = {l > 0 ? problem.transitions()[l - 1] : null, l + 1 < L ? problem.transitions()[l] : null};
      alt[l] = LocalityReplicas.row(loads, warmStart.phy2log()[l], nbs, new boolean[] {true, false}, problem.gpus(),
          problem.nodes(), tuning.gpuWeight(), tuning.nodeWeight());
      any |= alt[l] != null;
    }
    return any ? alt : null;
  }

  /** The planner proper; {@code altBase} (may be null, as may its rows) replaces the warm start's row, and its replica counts, as a layer's starting point. */
  private static PlanReport planWithCounts(PlacementProblem problem, Placement warmStart, CpSatOptions options, CpSatTuning tuning,
      boolean perWorkloadCaps, int[][] altBase) {
    long t0 = System.nanoTime();
    if (options == null) options = CpSatOptions.defaults();
    if (tuning == null) tuning = CpSatTuning.defaults();
    if (!(options.timeLimitSeconds() > 0)) {
      throw new IllegalArgumentException("time limit must be > 0 seconds, got " + options.timeLimitSeconds());
    }
    if (options.workers() < 0) throw new IllegalArgumentException("workers must be >= 0, got " + options.workers());
    int workers = options.workers() == 0 ? Runtime.getRuntime().availableProcessors() : options.workers();
    Consumer<String> progress = options.progress() == null ? s -> {} : options.progress();
    int L = problem.layers(), E = problem.experts(), G = problem.gpus(), N = problem.nodes(), P = problem.slots();
    int W = problem.loads().length;
    boolean robust = W > 1 && !perWorkloadCaps;
    if (warmStart != null) checkShape(problem, warmStart);
    loadNatives();
    // leave time for the final checks and the bound (they build one model per layer)
    double reserve = Math.min(0.15 * options.timeLimitSeconds(), 0.03 * options.timeLimitSeconds() + 0.02 * problem.layers());
    long deadline = t0 + (long) ((options.timeLimitSeconds() - reserve) * 1e9);

    // per layer: loads, replica counts and the base row the hints come from
    double[][][] loads = new double[L][W][];
    int[][] warmRows = new int[L][];
    int[][] cnt = new int[L][];
    int[][] base = new int[L][];
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
    Placement warm = new Placement(E, G, warmRows);
    if (altBase != null) {
      for (int l = 0; l < L; l++) {
        if (altBase[l] == null) continue;
        base[l] = altBase[l];
        cnt[l] = countsOf(altBase[l], E);
      }
    }
    // per-workload caps: scale each workload so that the warm start's max GPU load is the same for all
    double[][] allowance = new double[L][];
    if (perWorkloadCaps) {
      for (int l = 0; l < L; l++) {
        allowance[l] = new double[W];
        double ref = 1 / PlanMetrics.balancedness(warmRows[l], G, loads[l][0]);
        for (int w = 0; w < W; w++) allowance[l][w] = (1 / PlanMetrics.balancedness(warmRows[l], G, loads[l][w])) / ref;
      }
    }

    int[][] rows = new int[L][];
    double[] layerObj = new double[L], layerBound = new double[L];
    String[] layerStatus = new String[L];
    boolean[] layerAffinity = new boolean[L];
    long[] caps = new long[L];
    boolean affinity = problem.hasAffinity() || hasCoact(problem, tuning);
    double passEnd = tuning.refineFraction() > 0 && affinity ? 1 - tuning.refineFraction() : 1;
    long fwdDeadline = t0 + (long) ((deadline - t0) * passEnd);

    boolean cpSat = true;
    int unknownRun = 0;
    for (int l = 0; l < L; l++) {
      List<LayerModel.Neighbor> nbs = new ArrayList<>();
      if (l > 0 && problem.transitions() != null) nbs.add(new LayerModel.Neighbor(rows[l - 1], problem.transitions()[l - 1], true));
      LayerModel model = new LayerModel(E, G, N, P, cnt[l], loads[l], nbs, coact(problem, l), tuning, allowance[l]);
      double budget = Math.max(0, (fwdDeadline - System.nanoTime()) / 1e9 / (L - l));
      LayerOutcome out = solveLayer(model, base[l], warmRows[l], robust, !perWorkloadCaps, tuning, budget, workers,
          options.seed() + l, cpSat);
      if (model.hasAffinity) unknownRun = out.status.endsWith("UNKNOWN") ? unknownRun + 1 : 0;
      if (cpSat && unknownRun >= 3) {
        cpSat = false;
        progress.accept("ilp: CP-SAT found no solution in 3 layers' share of the time in a row; swap search only from here on");
      }
      rows[l] = out.row;
      layerAffinity[l] = model.hasAffinity;
      caps[l] = out.cap;
      layerObj[l] = out.objective;
      layerBound[l] = out.bound;
      layerStatus[l] = out.status;
      progress.accept(String.format(Locale.ROOT, "ilp layer %d/%d: %s objective %.6g bound %.6g (hint %.6g) %.2fs elapsed",
          l + 1, L, out.status, out.objective, out.bound, out.hintObjective, (System.nanoTime() - t0) / 1e9));
    }

    int[][] forward = new int[L][];
    for (int l = 0; l < L; l++) forward[l] = rows[l].clone();
    if (affinity && (!robust || !tuning.robustReplication())) {
      // the forward pass re-places layer by layer; should the warm start still be better as a whole,
      // refine from it instead (same replica counts)
      long fwdCost = totalCost(problem, rows, cnt, tuning), warmCost = totalCost(problem, warmRows, null, tuning);
      if (warmCost < fwdCost) {
        progress.accept("ilp: the warm start (cost " + warmCost + ") beats the forward pass (" + fwdCost + "); refining the warm start");
        for (int l = 0; l < L; l++) {
          rows[l] = warmRows[l].clone();
          cnt[l] = countsOf(rows[l], E);
        }
      }
    }
    // refinement sweeps: each layer again with both neighbours fixed (only the affinity cost moves),
    // swap local search then CP-SAT; each sweep takes half of the time left, so several run
    int sweeps = 0;
    if (affinity) {
      while (System.nanoTime() < deadline - 50_000_000L) {
        long before = totalCost(problem, rows, cnt, tuning);
        long now = System.nanoTime();
        long sweepEnd = deadline - now < 2_000_000_000L ? deadline : now + (deadline - now) / 2;
        for (int l = 0; l < L && System.nanoTime() < deadline - 50_000_000L; l++) {
          List<LayerModel.Neighbor> nbs = new ArrayList<>();
          if (problem.transitions() != null) {
            if (l > 0) nbs.add(new LayerModel.Neighbor(rows[l - 1], problem.transitions()[l - 1], true));
            if (l + 1 < L) nbs.add(new LayerModel.Neighbor(rows[l + 1], problem.transitions()[l], false));
          }
          LayerModel model = new LayerModel(E, G, N, P, cnt[l], loads[l], nbs, coact(problem, l), tuning, allowance[l]);
          if (!model.hasAffinity) continue;
          double budget = Math.max(0, (sweepEnd - System.nanoTime()) / 1e9 / (L - l));
          long cap = Math.max(caps[l], model.maxScaledLoad(rows[l]));
          long ts = System.nanoTime();
          long seed = options.seed() + 1000L * (sweeps + 1) + l;
          double lsShare = cpSat ? LOCAL_SEARCH_SHARE : 1.0;
          rows[l] = model.localSearch(rows[l], cap, ts + (long) (Math.max(budget * lsShare, 0.005) * 1e9), seed);
          budget -= (System.nanoTime() - ts) / 1e9;
          if (!cpSat || budget <= 0.05) continue;
          LayerModel.Result r = model.solve(rows[l], false, cap, budget, workers, (int) seed);
          if (r.row() != null && model.cost(r.row()) < model.cost(rows[l]) && model.maxScaledLoad(r.row()) <= cap) {
            rows[l] = r.row();
          }
        }
        sweeps++;
        long after = totalCost(problem, rows, cnt, tuning);
        progress.accept(String.format(Locale.ROOT, "ilp refine sweep %d: cost %d -> %d, %.2fs elapsed",
            sweeps, before, after, (System.nanoTime() - t0) / 1e9));
        if (after >= before) break;
      }
    }

    Placement plan = new Placement(E, G, rows);
    double objective, bound;
    String status = aggregateStatus(layerStatus);
    if (affinity) {
      long ours = totalCost(problem, rows, cnt, tuning);
      long theirs = totalCost(problem, warmRows, null, tuning);
      if (ours > theirs || !balanceHolds(problem, plan, warm, tuning, robust)) {
        plan = warm;
        ours = theirs;
        status = "WARM_START";
      }
      double unit = tuning.uniformReplicaChoice() ? LayerObjective.UNIFORM_UNIT : 1;
      objective = ours / unit;
      {
        int[][] rowsOut = plan.phy2log();
        int[][] cntOut = new int[L][];
        for (int l = 0; l < L; l++) cntOut[l] = countsOf(rowsOut[l], E);
        // per layer: the best cost of its terms with the previous layer as finally placed; CP-SAT's
        // bound where that previous layer did not move after the forward pass, else the relaxed one
        double b = 0;
        for (int l = 0; l < L; l++) {
          List<LayerModel.Neighbor> nbs = new ArrayList<>();
          if (l > 0 && problem.transitions() != null) nbs.add(new LayerModel.Neighbor(rowsOut[l - 1], problem.transitions()[l - 1], true));
          LayerModel model = new LayerModel(E, G, N, P, cntOut[l], new double[1][E], nbs, coact(problem, l), tuning);
          double lb = model.relaxedBound();
          if (layerAffinity[l] && !Double.isNaN(layerBound[l]) && (l == 0 || Arrays.equals(rowsOut[l - 1], forward[l - 1]))) {
            lb = Math.max(lb, layerBound[l]);
          }
          b += lb;
        }
        bound = Math.min(b / unit, objective);
      }
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

  /** Share of a layer's budget the swap local search may use before CP-SAT (it usually converges far sooner). */
  static final double LOCAL_SEARCH_SHARE = 0.25;

  private record LayerOutcome(int[] row, double objective, double bound, String status, double hintObjective, long cap) {}

  /**
   * One layer of the forward pass. Objective units: affinity cost in weighted tokens when the layer
   * has affinity terms; otherwise the worst max/mean GPU load ratio.
   */
  private static LayerOutcome solveLayer(LayerModel model, int[] base, int[] warmRow, boolean robust, boolean repack, CpSatTuning tuning,
      double budget, int workers, int seed, boolean useCpSat) {
    int[] hint = model.relabel(base);
    // no re-packing for an unseen workload: minimising the traced workloads' max load fits the packing
    // to them, and on ESFT that cost the held-out task 0.01-0.03 balancedness against EPLB's packing
    boolean minMaxPhase = repack && (robust || !model.hasAffinity);
    String status = "HINT";
    double minMaxBound = Double.NaN;
    if (minMaxPhase && budget > 0.02) {
      double share = model.hasAffinity ? 0.3 : 1.0;
      LayerModel.Result r = model.solve(hint, true, 0, budget * share, workers, seed);
      budget -= budget * share;
      if (r.row() != null && model.maxScaledLoad(r.row()) <= model.maxScaledLoad(hint)) {
        hint = model.relabel(r.row());
        status = r.status();
      }
      minMaxBound = r.bound();
    }
    if (!model.hasAffinity) {
      double obj = model.maxScaledLoad(hint) / (double) LayerModel.MEAN;
      double bound = Double.isNaN(minMaxBound) ? 1.0 : Math.max(1.0, minMaxBound / LayerModel.MEAN);
      return new LayerOutcome(hint, obj, Math.min(bound, obj), status, Double.NaN,
          capFor(model, hint, base, warmRow, robust, tuning));
    }
    long cap = capFor(model, hint, base, warmRow, robust, tuning);
    long relabelCost = model.cost(hint);
    long relaxed = model.relaxedBound();
    long t = System.nanoTime();
    double lsShare = useCpSat ? LOCAL_SEARCH_SHARE : 1.0;
    hint = model.localSearch(hint, cap, t + (long) (budget * lsShare * 1e9), seed);
    budget -= (System.nanoTime() - t) / 1e9;
    long hintCost = model.cost(hint);
    status = "SWAPS";
    if (useCpSat && budget > 0.02) {
      LayerModel.Result r = model.solve(hint, false, cap, budget, workers, seed);
      double bound = Double.isNaN(r.bound()) ? relaxed : Math.max(relaxed, r.bound());
      if (r.row() != null && model.cost(r.row()) <= hintCost && model.maxScaledLoad(r.row()) <= cap) {
        long c = model.cost(r.row());
        return new LayerOutcome(r.row(), c, Math.min(bound, c), r.status(), relabelCost, cap);
      }
      return new LayerOutcome(hint, hintCost, Math.min(bound, hintCost), status + "/" + r.status(), relabelCost, cap);
    }
    return new LayerOutcome(hint, hintCost, Math.min(relaxed, hintCost), status, relabelCost, cap);
  }

  /**
   * The cap on every workload's scaled GPU load: (1 + eps) x the reference max load. One workload:
   * the reference is the warm start's layer. Several: the best worst-case load found so far (the hint).
   */
  private static long capFor(LayerModel model, int[] current, int[] base, int[] warmRow, boolean robust, CpSatTuning tuning) {
    long ref;
    if (robust) {
      ref = Math.min(model.maxScaledLoad(current), model.maxScaledLoad(base));
    } else {
      ref = model.maxScaledLoadOwnCounts(warmRow);
    }
    long cap = (long) Math.floor(ref * (1 + tuning.balanceSlack()));
    return Math.max(cap, model.maxScaledLoad(current));
  }

  private static boolean hasCoact(PlacementProblem p, CpSatTuning t) {
    return p.coactivations() != null && t.coactPairs() > 0 && (t.coactGpuWeight() > 0 || t.coactNodeWeight() > 0);
  }

  private static io.moeyard.placement.model.PairCounts coact(PlacementProblem p, int l) {
    return p.coactivations() == null ? null : p.coactivations()[l];
  }

  /** Exact total affinity cost (transitions + modelled co-activation pairs) of a plan. */
  static long totalCost(PlacementProblem problem, int[][] rows, int[][] cntOrNull, CpSatTuning tuning) {
    int L = rows.length;
    long total = 0;
    for (int l = 0; l < L; l++) {
      int[] cnt = cntOrNull != null ? cntOrNull[l] : countsOf(rows[l], problem.experts());
      List<LayerModel.Neighbor> nbs = new ArrayList<>();
      if (l > 0 && problem.transitions() != null) nbs.add(new LayerModel.Neighbor(rows[l - 1], problem.transitions()[l - 1], true));
      // the model only needs loads for its balance part; pass zeros
      double[][] zero = new double[1][problem.experts()];
      LayerModel m = new LayerModel(problem.experts(), problem.gpus(), problem.nodes(), problem.slots(), cnt, zero, nbs,
          coact(problem, l), tuning);
      total += m.cost(rows[l]);
    }
    return total;
  }

  /** Replicas per expert in a layer row. */
  static int[] countsOf(int[] row, int experts) {
    int[] c = new int[experts];
    for (int e : row) c[e]++;
    return c;
  }

  private static boolean balanceHolds(PlacementProblem problem, Placement plan, Placement warm, CpSatTuning tuning, boolean robust) {
    for (int l = 0; l < plan.layers(); l++) {
      double ours = 0, theirs = 0;
      for (double[][] w : problem.loads()) {
        ours = Math.max(ours, 1 / PlanMetrics.balancedness(plan.phy2log()[l], plan.gpus(), w[l]));
        theirs = Math.max(theirs, 1 / PlanMetrics.balancedness(warm.phy2log()[l], warm.gpus(), w[l]));
        if (!robust && ours > theirs * (1 + tuning.balanceSlack()) + 1e-4) return false;
      }
      if (robust && ours > theirs * (1 + tuning.balanceSlack()) + 1e-4) return false;
    }
    return true;
  }

  private static String aggregateStatus(String[] st) {
    int optimal = 0;
    for (String s : st) if (s.equals("OPTIMAL")) optimal++;
    if (optimal == st.length) return "OPTIMAL";
    return "FEASIBLE (" + optimal + "/" + st.length + " layers optimal)";
  }

  private static void checkShape(PlacementProblem p, Placement w) {
    if (w.layers() != p.layers() || w.experts() != p.experts() || w.gpus() != p.gpus() || w.slots() != p.slots()) {
      throw new IllegalArgumentException(String.format(Locale.ROOT,
          "warm start shape (layers %d, experts %d, gpus %d, slots %d) does not match the problem (%d, %d, %d, %d)",
          w.layers(), w.experts(), w.gpus(), w.slots(), p.layers(), p.experts(), p.gpus(), p.slots()));
    }
    if (Arrays.stream(w.phy2log()).anyMatch(r -> r == null)) throw new IllegalArgumentException("warm start has a null layer");
  }
}
