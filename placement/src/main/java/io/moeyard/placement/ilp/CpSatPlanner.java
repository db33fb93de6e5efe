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
    if (warmStart != null) checkShape(problem, warmStart);
    loadNatives();
    PlanRun run = new PlanRun(problem, warmStart, options, tuning, perWorkloadCaps, altBase, t0);
    run.forwardPass();
    run.keepWarmStartIfBetter();
    run.refine();
    return run.report();
  }

  /** Share of a layer's budget the swap local search may use before CP-SAT (it usually converges far sooner). */
  static final double LOCAL_SEARCH_SHARE = 0.25;

  record LayerOutcome(int[] row, double objective, double bound, String status, double hintObjective, long cap) {}

  /**
   * One layer of the forward pass. Objective units: affinity cost in weighted tokens when the layer
   * has affinity terms; otherwise the worst max/mean GPU load ratio.
   */
  static LayerOutcome solveLayer(LayerModel model, int[] base, int[] warmRow, boolean robust, boolean repack, CpSatTuning tuning,
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

  static boolean hasCoact(PlacementProblem p, CpSatTuning t) {
    return p.coactivations() != null && t.coactPairs() > 0 && (t.coactGpuWeight() > 0 || t.coactNodeWeight() > 0);
  }

  static PairCounts coact(PlacementProblem p, int l) {
    return p.coactivations() == null ? null : p.coactivations()[l];
  }

  /** Exact total affinity cost (transitions + modelled co-activation pairs) of a plan. */
  static long totalCost(PlacementProblem problem, int[][] rows, int[][] cntOrNull, CpSatTuning tuning) {
    int L = rows.length;
    long total = 0;
    for (int l = 0; l < L; l++) {
      int[] cnt = cntOrNull != null ? cntOrNull[l] : countsOf(rows[l], problem.experts());
      // the model only needs loads for its balance part; pass zeros
      double[][] zero = new double[1][problem.experts()];
      LayerModel m = new LayerModel(problem.experts(), problem.gpus(), problem.nodes(), problem.slots(), cnt, zero,
          neighbours(problem, rows, l, false), coact(problem, l), tuning);
      total += m.cost(rows[l]);
    }
    return total;
  }

  /**
   * Layer l's fixed neighbours in {@code rows}: the previous layer, and with {@code next} the
   * following one (when the problem has transitions and they exist).
   */
  static List<LayerModel.Neighbor> neighbours(PlacementProblem problem, int[][] rows, int l, boolean next) {
    List<LayerModel.Neighbor> nbs = new ArrayList<>();
    if (problem.transitions() == null) return nbs;
    if (l > 0) nbs.add(new LayerModel.Neighbor(rows[l - 1], problem.transitions()[l - 1], true));
    if (next && l + 1 < rows.length) nbs.add(new LayerModel.Neighbor(rows[l + 1], problem.transitions()[l], false));
    return nbs;
  }

  /** Replicas per expert in a layer row. */
  static int[] countsOf(int[] row, int experts) {
    int[] c = new int[experts];
    for (int e : row) c[e]++;
    return c;
  }

  static boolean balanceHolds(PlacementProblem problem, Placement plan, Placement warm, CpSatTuning tuning, boolean robust) {
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

  static String aggregateStatus(String[] st) {
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
