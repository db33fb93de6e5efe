package io.moeyard.placement.ilp;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.cost.PlacementScore;
import io.moeyard.placement.eplb.Eplb;
import io.moeyard.placement.plan.LoadForecast;
import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.PlanReport;
import io.moeyard.placement.trace.LocalityHeadroom;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Measurement driver for the CP-SAT planner (not a test: it asserts nothing and takes minutes).
 * Runs only with {@code -Dmoeyard.test.heavy=true}; {@code -Dmoeyard.ilp.bench=esft,dsv3,loo}
 * picks the experiments (also: headroom, tune, layer, hedge, shrink, jitter), {@code -Dmoeyard.ilp.seconds=60} the time limit, {@code
 * -Dmoeyard.ilp.workers=2} the CP-SAT workers. Prints Markdown tables and appends them to
 * {@code placement/target/ilp-bench.md}.
 */
@EnabledIfSystemProperty(named = "moeyard.test.heavy", matches = "true")
class IlpBenchTest {
  static final Path ESFT = Path.of(System.getProperty("moeyard.esft.dir", "/work/shared/data/esft"));
  static final String[] TASKS = {"intent", "law", "summary", "translation"};
  final double seconds = Double.parseDouble(System.getProperty("moeyard.ilp.seconds", "60"));
  final int workers = Integer.parseInt(System.getProperty("moeyard.ilp.workers", "2"));
  final String which = System.getProperty("moeyard.ilp.bench", "esft,dsv3,loo");
  final StringBuilder md = new StringBuilder();
  final CpSatTuning tuning = tuning(System.getProperty("moeyard.ilp.tuning", ""));

  /** {@code eps:gpuW:nodeW:coactGpuW:coactNodeW:coactPairs:refine[:uniform|nearest[:warmcounts]]}, empty = defaults. */
  static CpSatTuning tuning(String spec) {
    if (spec.isBlank()) return CpSatTuning.defaults();
    String[] f = spec.split(":");
    return new CpSatTuning(Double.parseDouble(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2]), Long.parseLong(f[3]),
        Long.parseLong(f[4]), Integer.parseInt(f[5]), Double.parseDouble(f[6]), true, f.length > 7 && f[7].equals("uniform"),
        !(f.length > 8 && f[8].equals("warmcounts")));
  }

  void out(String s) {
    System.out.println(s);
    md.append(s).append('\n');
  }

  void flush() throws IOException {
    Path f = Path.of("target", "ilp-bench.md");
    Files.createDirectories(f.getParent());
    Files.writeString(f, md.toString(), java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    md.setLength(0);
  }

  CpSatOptions options(double s) {
    return new CpSatOptions(s, workers, 1, line -> {
      if (line.startsWith("ilp done") || line.startsWith("ilp refine") || line.contains("layer 1/") || line.matches(".*layer \\d*0/.*")) {
        System.out.println("    " + line);
      }
    });
  }

  static List<int[][][]> esft() throws IOException {
    List<int[][][]> t = new ArrayList<>();
    for (String task : TASKS) t.add(TraceBuilder.readNpy(ESFT.resolve(task + ".npy")));
    return t;
  }

  void header() {
    out("| plan | mean bal | min bal | cross-GPU (some) | cross-node (some) | cross-GPU (uniform) | cross-node (uniform) | objective | bound | gap | status | s |");
    out("|---|---|---|---|---|---|---|---|---|---|---|---|");
  }

  void row(String name, PlacementProblem scoreOn, Placement p, PlanReport r) {
    PlacementScore s = CostModel.score(scoreOn, p);
    PlanMetrics.Traffic t = PlanMetrics.transitions(p, scoreOn.transitions(), scoreOn.nodes());
    out(String.format(Locale.ROOT, "| %s | %.4f | %.4f | %d (%.1f%%) | %d (%.1f%%) | %.0f | %.0f | %s | %s | %s | %s | %s |",
        name, s.meanBalancedness(), s.worstBalancedness(), t.crossGpu(), pct(t.crossGpu(), t.total()), t.crossNode(),
        pct(t.crossNode(), t.total()), s.crossGpu(), s.crossNode(),
        r == null ? "" : String.format(Locale.ROOT, "%.6g", r.objective()),
        r == null ? "" : String.format(Locale.ROOT, "%.6g", r.bound()),
        r == null ? "" : String.format(Locale.ROOT, "%.2f%%", 100 * r.gap()),
        r == null ? "" : r.status(), r == null ? "" : String.format(Locale.ROOT, "%.1f", r.seconds())));
  }

  static double pct(long a, long b) {
    return b == 0 ? 0 : 100.0 * a / b;
  }

  void compare(String title, PlacementProblem p, Placement eplb) {
    out("");
    out("### " + title);
    out("");
    header();
    row("eplb", p, eplb, null);
    PlanReport relabel = CpSatPlanner.plan(p, eplb, options(0.2), tuning);
    row("eplb+relabel+swaps (ilp, 0.2 s: no CP-SAT)", p, relabel.placement(), relabel);
    PlanReport ilp = CpSatPlanner.plan(p, eplb, options(seconds), tuning);
    row("ilp " + (int) seconds + " s, " + workers + " workers", p, ilp.placement(), ilp);
    PlanMetrics.Traffic te = PlanMetrics.transitions(eplb, p.transitions(), p.nodes());
    PlanMetrics.Traffic ti = PlanMetrics.transitions(ilp.placement(), p.transitions(), p.nodes());
    PlacementScore se = CostModel.score(p, eplb), si = CostModel.score(p, ilp.placement());
    out("");
    out(String.format(Locale.ROOT, "ilp vs eplb under the cost model's uniform replica rule: cross-GPU %+.1f%%, cross-node %+.1f%%",
        100 * (si.crossGpu() - se.crossGpu()) / se.crossGpu(), 100 * (si.crossNode() - se.crossNode()) / se.crossNode()));
    out(String.format(Locale.ROOT, "ilp vs eplb: mean balancedness %+.4f, cross-GPU %+.1f%%, cross-node %+.1f%% (some-replica rule)",
        PlanMetrics.meanBalancedness(ilp.placement(), p.loads()[0]) - PlanMetrics.meanBalancedness(eplb, p.loads()[0]),
        100.0 * (ti.crossGpu() - te.crossGpu()) / te.crossGpu(), 100.0 * (ti.crossNode() - te.crossNode()) / te.crossNode()));
  }

  @Test
  void measure() throws IOException {
    CpSatPlanner.loadNatives();
    out("");
    out(String.format(Locale.ROOT, "## CP-SAT planner measurements (%s, limit %.0f s, %d workers, %d cores)", java.time.Instant.now(),
        seconds, workers, Runtime.getRuntime().availableProcessors()));
    if (which.contains("esft")) {
      List<int[][][]> t = esft();
      PlacementProblem p = TraceBuilder.summed(TraceBuilder.problem(t, 26, 64, 16, 2, 80, true));
      Placement eplb = Eplb.rebalance(p.loads()[0], 80, 1, 2, 16);
      compare("ESFT, 4 tasks summed: 26 layers, 64 experts top-6, 16 GPUs / 2 nodes, 80 slots", p, eplb);
      flush();
    }
    if (which.contains("headroom")) {
      List<int[][][]> t = esft();
      out("");
      out("### ESFT locality headroom: swap search with no loads, no replicas, E / groups experts per group (best of 4 starts)");
      out("");
      out("| trace | top-5 successor share | cross-node, 2 groups (random: 50%) | cross-GPU, 16 groups (random: 93.75%) |");
      out("|---|---|---|---|");
      List<String> names = new ArrayList<>(List.of(TASKS));
      // -Dmoeyard.ilp.headroom.traces=a.npy,b.npy adds traces (64 experts), e.g. synthetic ones to compare
      for (String f : System.getProperty("moeyard.ilp.headroom.traces", "").split(",")) {
        if (!f.isBlank()) {
          t.add(TraceBuilder.readNpy(Path.of(f)));
          names.add(Path.of(f).getFileName().toString());
        }
      }
      for (int h = 0; h < t.size(); h++) {
        List<int[][][]> one = new ArrayList<>();
        one.add(t.get(h));
        PairCounts[] m = TraceBuilder.problem(one, 26, 64, 16, 2, 80, true).transitions();
        out(String.format(Locale.ROOT, "| %s | %.3f | %.1f%% | %.1f%% |", names.get(h), LocalityHeadroom.topSuccessorShare(m, 64, 5),
            100 * LocalityHeadroom.crossFraction(m, 64, 2, 4, 1, Long.MAX_VALUE),
            100 * LocalityHeadroom.crossFraction(m, 64, 16, 4, 1, Long.MAX_VALUE)));
      }
      flush();
    }
    if (which.contains("tune")) {
      List<int[][][]> t = esft();
      PlacementProblem p = TraceBuilder.summed(TraceBuilder.problem(t, 26, 64, 16, 2, 80, true));
      Placement eplb = Eplb.rebalance(p.loads()[0], 80, 1, 2, 16);
      PlanMetrics.Traffic te = PlanMetrics.transitions(eplb, p.transitions(), p.nodes());
      double be = PlanMetrics.meanBalancedness(eplb, p.loads()[0]);
      out("");
      out("### ESFT tuning (" + seconds + " s each)");
      out("");
      out("| tuning | d mean bal | d cross-GPU | d cross-node | gap |");
      out("|---|---|---|---|---|");
      for (String spec : System.getProperty("moeyard.ilp.variants", "").split(";")) {
        if (spec.isBlank()) continue;
        PlanReport r = CpSatPlanner.plan(p, eplb, options(seconds), tuning(spec));
        PlanMetrics.Traffic ti = PlanMetrics.transitions(r.placement(), p.transitions(), p.nodes());
        out(String.format(Locale.ROOT, "| %s | %+.4f | %+.1f%% | %+.1f%% | %.1f%% |", spec,
            PlanMetrics.meanBalancedness(r.placement(), p.loads()[0]) - be, 100.0 * (ti.crossGpu() - te.crossGpu()) / te.crossGpu(),
            100.0 * (ti.crossNode() - te.crossNode()) / te.crossNode(), 100 * r.gap()));
      }
      flush();
    }
    if (which.contains("layer")) {
      // how one layer's sub-problem converges with time (prev layer = the relabelled EPLB plan)
      List<int[][][]> t = esft();
      PlacementProblem p = TraceBuilder.summed(TraceBuilder.problem(t, 26, 64, 16, 2, 80, true));
      Placement eplb = Eplb.rebalance(p.loads()[0], 80, 1, 2, 16);
      Placement rel = CpSatPlanner.plan(p, eplb, options(0.2), tuning).placement();
      int l = 13;
      int[] cnt = new int[64];
      for (int e : eplb.phy2log()[l]) cnt[e]++;
      LayerModel m = new LayerModel(64, 16, 2, 80, cnt, new double[][] {p.loads()[0][l]},
          List.of(new LayerModel.Neighbor(rel.phy2log()[l - 1], p.transitions()[l - 1], true)), null, tuning);
      int[] hint = m.relabel(eplb.phy2log()[l]);
      long cap = (long) Math.floor(m.maxScaledLoad(eplb.phy2log()[l]) * (1 + tuning.balanceSlack()));
      out("layer " + l + ": hint cost " + m.cost(hint) + ", eplb cost " + m.cost(eplb.phy2log()[l]) + ", rel cost " + m.cost(rel.phy2log()[l]));
      long ls0 = System.nanoTime();
      int[] ls = m.localSearch(hint, cap, System.nanoTime() + 5_000_000_000L, 1);
      out(String.format(Locale.ROOT, "  swap local search: cost %d in %.3f s", m.cost(ls), (System.nanoTime() - ls0) / 1e9));
      hint = ls;
      for (double s : new double[] {1, 3, 10}) {
        for (int wk : new int[] {1, 2}) {
          long t0 = System.nanoTime();
          LayerModel.Result r = m.solve(hint, false, cap, s, wk, 1);
          out(String.format(Locale.ROOT, "  %.0f s %d workers: %s cost %.0f bound %.0f (%.1f s)", s, wk, r.status(), r.objective(), r.bound(),
              (System.nanoTime() - t0) / 1e9));
        }
      }
      flush();
    }
    if (which.contains("dsv3")) {
      int gpus = Integer.parseInt(System.getProperty("moeyard.ilp.dsv3.gpus", "64"));
      int nodes = Integer.parseInt(System.getProperty("moeyard.ilp.dsv3.nodes", "8"));
      int slots = Integer.parseInt(System.getProperty("moeyard.ilp.dsv3.slots", "320"));
      int tokens = Integer.parseInt(System.getProperty("moeyard.ilp.dsv3.tokens", "8192"));
      long t0 = System.nanoTime();
      int[][][] tr = TraceBuilder.synthetic(42, tokens, 58, 256, 8, 32, Double.parseDouble(System.getProperty("moeyard.ilp.dsv3.stick", "0.6")), Double.parseDouble(System.getProperty("moeyard.ilp.dsv3.zipf", "0.5")));
      PlacementProblem p = TraceBuilder.problem(List.<int[][][]>of(tr), 58, 256, gpus, nodes, slots, true);
      System.out.printf(Locale.ROOT, "    synthetic trace built in %.1f s%n", (System.nanoTime() - t0) / 1e9);
      Placement eplb = Eplb.rebalance(p.loads()[0], slots, 8, nodes, gpus);
      compare(String.format(Locale.ROOT, "Synthetic DeepSeek-V3 shape: 58 layers, 256 experts top-8, topic stickiness %s, Zipf %s, %d tokens, %d GPUs / %d nodes, %d slots",
          System.getProperty("moeyard.ilp.dsv3.stick", "0.6"), System.getProperty("moeyard.ilp.dsv3.zipf", "0.5"),
          tokens, gpus, nodes, slots), p, eplb);
      flush();
    }
    if (which.contains("hedge")) {
      // leave-one-out again, robust planning with the summed loads' replica counts (EPLB's)
      List<int[][][]> t = esft();
      CpSatTuning sumReplicas = tuning.withRobustReplication(false);
      out("");
      out("### ESFT leave-one-out, robust planning with EPLB's replica counts (" + seconds + " s)");
      out("");
      out("| held out | eplb (sum of 3) | ilp robust, EPLB counts | ilp robust load-only, EPLB counts |");
      out("|---|---|---|---|");
      for (int h = 0; h < 4; h++) {
        Split sp = Split.of(t, h);
        PlacementProblem robust = sp.robust();
        PlacementProblem loadOnlyRobust = sp.loadOnlyRobust();
        PlacementProblem test = sp.test();
        Placement eplb = sp.eplb();
        Placement rob = CpSatPlanner.plan(robust, eplb, options(seconds), sumReplicas).placement();
        Placement robLoad = CpSatPlanner.plan(loadOnlyRobust, eplb, options(seconds), sumReplicas).placement();
        out(String.format(Locale.ROOT, "| %s | %s | %s | %s |", TASKS[h], cell(test, eplb), cell(test, rob), cell(test, robLoad)));
      }
      flush();
    }
    if (which.contains("shrink")) {
      // leave-one-out with EPLB on the three tasks' loads shrunk towards uniform: (1 - lambda) x
      // their mean share + lambda / E (each task normalised first; ties broken by the mean share,
      // so replicas still go to the historically hottest experts). lambda = 0 is EPLB on the
      // normalised mean, lambda = 1 packs as if every expert were equally loaded.
      List<int[][][]> t = esft();
      double[] lambdas = {0, 0.5, 0.75, 1};
      out("");
      out("### ESFT leave-one-out, EPLB on loads shrunk towards uniform (held-out mean balancedness)");
      out("");
      StringBuilder head = new StringBuilder("| held out | eplb (raw sum of 3) | fitted (LoadForecast: slope) |");
      StringBuilder rule = new StringBuilder("|---|---|---|");
      for (double lam : lambdas) {
        head.append(String.format(Locale.ROOT, " lambda %.2f |", lam));
        rule.append("---|");
      }
      out(head.toString());
      out(rule.toString());
      double[] sums = new double[lambdas.length + 2];
      for (int h = 0; h < 4; h++) {
        Split sp = Split.of(t, h);
        double[][][] loads = sp.robust().loads();
        StringBuilder row = new StringBuilder("| " + TASKS[h] + " |");
        double b = PlanMetrics.meanBalancedness(sp.eplb(), sp.test().loads()[0]);
        sums[0] += b;
        row.append(String.format(Locale.ROOT, " %.4f |", b));
        LoadForecast f = LoadForecast.of(loads);
        double bf = PlanMetrics.meanBalancedness(Eplb.rebalance(f.loads(), 80, 1, 2, 16), sp.test().loads()[0]);
        sums[lambdas.length + 1] += bf;
        row.append(String.format(Locale.ROOT, " %.4f: %.3f |", bf, f.slope()));
        for (int i = 0; i < lambdas.length; i++) {
          double[][] w = new double[26][64];
          for (int l = 0; l < 26; l++) {
            double[] mean = new double[64];
            for (double[][] task : loads) {
              double total = 0;
              for (double v : task[l]) total += v;
              for (int e = 0; e < 64; e++) mean[e] += task[l][e] / total / loads.length;
            }
            for (int e = 0; e < 64; e++) w[l][e] = (1 - lambdas[i]) * mean[e] + lambdas[i] / 64 + 1e-9 * mean[e];
          }
          double bl = PlanMetrics.meanBalancedness(Eplb.rebalance(w, 80, 1, 2, 16), sp.test().loads()[0]);
          sums[i + 1] += bl;
          row.append(String.format(Locale.ROOT, " %.4f |", bl));
        }
        out(row.toString());
      }
      StringBuilder mean = new StringBuilder("| mean |");
      mean.append(String.format(Locale.ROOT, " %.4f | %.4f |", sums[0] / 4, sums[lambdas.length + 1] / 4));
      for (int i = 1; i <= lambdas.length; i++) mean.append(String.format(Locale.ROOT, " %.4f |", sums[i] / 4));
      out(mean.toString());
      flush();
    }
    if (which.contains("jitter")) {
      // How much of a held-out balancedness gap is the plan and how much is the luck of the packing:
      // EPLB's greedy packing turns a 2% change in the loads it is given into a different packing, and
      // the held-out task's hot experts (unpredicted by the other three) land wherever that packing
      // put them. So each fold is planned K times on loads multiplied by (1 + N(0, 0.02)) per layer
      // and expert, and the spread of the held-out score is reported next to the unperturbed plan's.
      List<int[][][]> t = esft();
      int k = Integer.getInteger("moeyard.ilp.jitter.plans", 40);
      java.util.Random rnd = new java.util.Random(Long.getLong("moeyard.ilp.jitter.seed", 5));
      out("");
      out(String.format(Locale.ROOT, "### ESFT leave-one-out: held-out balancedness over %d plans on loads x (1 + N(0, 0.02))", k));
      out("");
      out("| held out | EPLB on the sum: exact / median [min, max] (exact's rank) | EPLB on the forecast: exact / median [min, max] (exact's rank) | forecast's median minus EPLB's |");
      out("|---|---|---|---|");
      double[] medianSums = new double[2];
      for (int h = 0; h < 4; h++) {
        Split sp = Split.of(t, h);
        double[][] test = sp.test().loads()[0];
        double[][][] inputs = {sp.summed().loads()[0], LoadForecast.of(sp.robust().loads()).loads()};
        StringBuilder row = new StringBuilder("| " + TASKS[h] + " |");
        double[] medians = new double[2];
        for (int m = 0; m < 2; m++) {
          double exact = PlanMetrics.meanBalancedness(Eplb.rebalance(inputs[m], 80, 1, 2, 16), test);
          double[] scores = new double[k];
          for (int i = 0; i < k; i++) {
            double[][] w = new double[26][64];
            for (int l = 0; l < 26; l++) {
              for (int e = 0; e < 64; e++) w[l][e] = inputs[m][l][e] * Math.max(0.5, 1 + 0.02 * rnd.nextGaussian());
            }
            scores[i] = PlanMetrics.meanBalancedness(Eplb.rebalance(w, 80, 1, 2, 16), test);
          }
          java.util.Arrays.sort(scores);
          medians[m] = (scores[(k - 1) / 2] + scores[k / 2]) / 2;
          medianSums[m] += medians[m];
          int below = 0;
          for (double s : scores) if (s < exact) below++;
          row.append(String.format(Locale.ROOT, " %.3f / %.3f [%.3f, %.3f] (above %d of %d) |", exact, medians[m], scores[0],
              scores[k - 1], below, k));
        }
        row.append(String.format(Locale.ROOT, " %+.3f |", medians[1] - medians[0]));
        out(row.toString());
      }
      out(String.format(Locale.ROOT, "| mean of medians | %.3f | %.3f | %+.3f |", medianSums[0] / 4, medianSums[1] / 4,
          (medianSums[1] - medianSums[0]) / 4));
      flush();
    }
    if (which.contains("loo")) {
      List<int[][][]> t = esft();
      out("");
      out("### ESFT leave-one-out: plan on 3 tasks, score on the 4th (16 GPUs / 2 nodes, 80 slots)");
      out("");
      out("| held out | eplb (sum of 3) | ilp (sum of 3) | ilp robust (3 workloads) | ilp robust, load-only | robust greedy (no CP-SAT) | eplb worst-of-3 | ilp robust worst-of-3 |");
      out("|---|---|---|---|---|---|---|---|");
      for (int h = 0; h < 4; h++) {
        Split sp = Split.of(t, h);
        PlacementProblem robust = sp.robust();
        PlacementProblem summed = sp.summed();
        PlacementProblem loadOnlyRobust = sp.loadOnlyRobust();
        PlacementProblem test = sp.test();
        Placement eplb = sp.eplb();
        Placement ilp = CpSatPlanner.plan(summed, eplb, options(seconds), tuning).placement();
        Placement rob = CpSatPlanner.plan(robust, eplb, options(seconds), tuning).placement();
        Placement robLoad = CpSatPlanner.plan(loadOnlyRobust, eplb, options(seconds)).placement();
        Placement greedy = CpSatPlanner.plan(loadOnlyRobust, eplb, options(0.2)).placement();
        out(String.format(Locale.ROOT, "| %s | %s | %s | %s | %s | %s | %.4f | %.4f |", TASKS[h], cell(test, eplb), cell(test, ilp),
            cell(test, rob), cell(test, robLoad), cell(test, greedy), CostModel.score(robust, eplb).worstBalancedness(),
            CostModel.score(robust, rob).worstBalancedness()));
      }
      out("");
      out("cells: mean balancedness on the held-out task / its cross-node transition share (some-replica rule)");
      flush();
    }
  }

  static String cell(PlacementProblem test, Placement p) {
    PlanMetrics.Traffic t = PlanMetrics.transitions(p, test.transitions(), test.nodes());
    return String.format(Locale.ROOT, "%.4f / %.1f%%", PlanMetrics.meanBalancedness(p, test.loads()[0]), pct(t.crossNode(), t.total()));
  }

  /** One ESFT leave-one-out split (16 GPUs / 2 nodes, 80 slots): task h held out, the other three planned on. */
  private record Split(PlacementProblem robust, PlacementProblem summed, PlacementProblem loadOnlyRobust,
      PlacementProblem test, Placement eplb) {
    static Split of(List<int[][][]> tasks, int h) {
      List<int[][][]> train = new ArrayList<>();
      for (int i = 0; i < tasks.size(); i++) if (i != h) train.add(tasks.get(i));
      PlacementProblem robust = TraceBuilder.problem(train, 26, 64, 16, 2, 80, true);
      PlacementProblem summed = TraceBuilder.summed(robust);
      PlacementProblem loadOnly = new PlacementProblem(26, 64, 16, 2, 80, robust.loads(), null, null);
      PlacementProblem test = TraceBuilder.problem(List.<int[][][]>of(tasks.get(h)), 26, 64, 16, 2, 80, true);
      return new Split(robust, summed, loadOnly, test, Eplb.rebalance(summed.loads()[0], 80, 1, 2, 16));
    }
  }
}
