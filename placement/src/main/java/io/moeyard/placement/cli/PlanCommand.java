package io.moeyard.placement.cli;

import io.moeyard.placement.cost.ReplicaRule;
import io.moeyard.placement.cost.Network;
import io.moeyard.placement.cost.PlacementScore;
import io.moeyard.placement.format.PlacementFormat;
import io.moeyard.placement.format.PlacementWriter;
import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;
import io.moeyard.placement.plan.LoadForecast;
import io.moeyard.placement.plan.Planners;
import io.moeyard.placement.plan.Problems;
import io.moeyard.engine.ModelPreset;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.Traces;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moeyard plan}: traces in, placement file and report out. */
@Command(
    name = "plan",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description =
        "Plan where experts live from routing traces, write it in an engine's format and report"
            + " balancedness (mean GPU load / max GPU load), cross-GPU / cross-node transitions between"
            + " consecutive layers, dispatch bytes (dedup'd, NVLink / network) and an estimated all-to-all"
            + " time. Several --trace files are several workloads: ilp plans for the worst of them (or,"
            + " with --robust unseen, for a workload none of them is), eplb for their summed loads."
            + " Bad input exits with code 2 and writes no file.")
public final class PlanCommand implements Callable<Integer> {
  static final List<String> ALGORITHMS = List.of("trivial", "eplb", "ilp");

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(names = "--trace", paramLabel = "FILE", required = true,
      description = "Per-token .npy trace [tokens, layers, topk] or {\"logical_count\": [L][E]} JSON; repeat for several workloads.")
  List<Path> traces;

  @Option(names = "--gpus", paramLabel = "G", required = true, description = "GPUs (EP ranks).")
  int gpus;

  @Option(names = "--nodes", paramLabel = "N", defaultValue = "1", description = "Nodes; G must be a multiple of N (default ${DEFAULT-VALUE}).")
  int nodes;

  @Option(names = "--replicas", paramLabel = "P",
      description = "TOTAL physical expert slots per layer (EPLB's num_replicas), e.g. 80 for 64 experts + 16 redundant;"
          + " a multiple of G, at least E. Default: the smallest multiple of G that holds every expert.")
  Integer replicas;

  @Option(names = "--groups", paramLabel = "g",
      description = "Expert groups for EPLB; hierarchical (groups -> nodes -> GPUs) iff groups %% nodes == 0, else global"
          + " (default 1, or the --preset's).")
  Integer groupsOption;

  @Option(names = "--preset", paramLabel = "NAME",
      description = "Model shape (deepseek-v3, qwen3-30b-a3b, ..., see trace synth): default --hidden and --groups from it,"
          + " and check that the traces have its layers and experts.")
  String preset;

  @Option(names = "--experts", paramLabel = "E", defaultValue = "0",
      description = "Logical experts per layer; ids outside [0, E) are an error. Default: largest id in the traces + 1.")
  int experts;

  @Option(names = "--algorithm", paramLabel = "ALG", defaultValue = "eplb", description = "trivial | eplb | ilp (default ${DEFAULT-VALUE}).")
  String algorithm;

  @Option(names = "--compare", description = "Run every algorithm on the same traces and report them side by side.")
  boolean compare;

  @Option(names = "--time-limit", paramLabel = "S", defaultValue = "60", description = "ilp: total seconds (default ${DEFAULT-VALUE}).")
  double timeLimit;

  @Option(names = "--workers", paramLabel = "N", defaultValue = "0", description = "ilp: CP-SAT workers, 0 = all cores (default ${DEFAULT-VALUE}).")
  int workers;

  @Option(names = "--seed", paramLabel = "N", defaultValue = "1", description = "ilp: solver seed (default ${DEFAULT-VALUE}).")
  int seed;

  @Option(names = "--robust", paramLabel = "GOAL", defaultValue = "worst",
      description = "ilp with several --trace: worst = plan for the worst of these workloads (each may run alone);"
          + " unseen = plan for a workload that is none of them: their mean load shrunk towards uniform by as much as"
          + " the traces predict one another (fitted leaving one out), so that balance holds on a new workload"
          + " (default ${DEFAULT-VALUE}).")
  String robust;

  @Option(names = "--locality", paramLabel = "WHAT",
      description = "ilp: which transitions to keep local: gpu (GPU and node), node (node only), none (balance only)."
          + " Default gpu, or node with --robust unseen: stacking experts that fire together on one GPU costs an"
          + " unseen workload balance.")
  String localityOption;

  @Option(names = "--balance-slack", paramLabel = "EPS",
      description = "ilp: each layer's max GPU load may exceed the warm start's (EPLB's) by this fraction to keep"
          + " transitions local, so mean balancedness may drop by up to about EPS x EPLB's (default 0.008).")
  Double balanceSlackOption;

  @Option(names = "--format", paramLabel = "FMT", defaultValue = "sglang", description = "sglang | eplb | vllm-ascend (default ${DEFAULT-VALUE}).")
  String format;

  @Option(names = "--out", paramLabel = "FILE", description = "Write the --algorithm's plan here (atomically).")
  Path out;

  @Option(names = "--eval-trace", paramLabel = "FILE", description = "Also score the plans on this trace, which they were not planned on; repeatable.")
  List<Path> evalTraces = new ArrayList<>();

  @Option(names = "--replica-rule", paramLabel = "RULE", defaultValue = "nearest",
      description = "How transitions use replicas, for the report and for ilp: nearest (local when some replica of a and of b"
          + " share the GPU / node: a dispatcher that picks the replica nearest the token, as moeyard's own and SGLang's"
          + " static dispatch do) or uniform (each replica equally likely: a dispatcher that spreads load). Default ${DEFAULT-VALUE}.")
  String replicaRule;

  @Option(names = "--per-layer", description = "After the summary, one row per layer and algorithm.")
  boolean perLayer;

  @Option(names = "--hidden", paramLabel = "H",
      description = "Hidden size for dispatch bytes (BF16 rows) (default " + Network.DEFAULT_HIDDEN + ", or the --preset's).")
  Integer hiddenOption;

  /** Effective values once --preset is applied. */
  private int groups;

  private int hidden;

  @Option(names = "--nvlink-gbps", paramLabel = "GB/s", defaultValue = "" + Network.DEFAULT_NVLINK_GBPS,
      description = "Intra-node bandwidth per GPU and direction, GB/s (default ${DEFAULT-VALUE}, DeepEP's H800 NVLink figure).")
  double nvlinkGbps;

  @Option(names = "--net-gbps", paramLabel = "GB/s", defaultValue = "" + Network.DEFAULT_NET_GBPS,
      description = "Inter-node bandwidth per GPU and direction, GB/s (default ${DEFAULT-VALUE}, DeepEP's H800 RDMA figure).")
  double netGbps;

  /** {@link #replicaRule}, parsed. */
  private ReplicaRule rule = ReplicaRule.NEAREST;

  @Override
  public Integer call() throws Exception {
    PrintWriter err = spec.commandLine().getErr();
    return BadInput.guard("moeyard plan", err, () -> run(spec.commandLine().getOut(), err));
  }

  private int run(PrintWriter stdout, PrintWriter err) throws Exception {
    Settings set = validate(err);
    String alg = set.algorithm();
    PlacementFormat fmt = set.format();
    ModelPreset model = set.model();
    boolean unseen = set.unseen();
    Locality locality = set.locality();
    double balanceSlack = set.balanceSlack();
    Network net = set.net();

    List<Trace> planTraces = Traces.load(traces, experts > 0 ? experts : model != null ? model.experts : 0);
    int E = planTraces.get(0).experts();
    if (model != null && (E != model.experts || planTraces.get(0).layers() != model.layers)) {
      throw new BadInput("traces have " + planTraces.get(0).layers() + " layers x " + E + " experts, preset " + model.id
          + " has " + model.layers + " x " + model.experts);
    }
    int P = replicas != null ? replicas : ((E + gpus - 1) / gpus) * gpus;
    if (P < E) throw new BadInput("--replicas " + P + " gives fewer slots than the " + E + " experts");
    if (groups % nodes == 0 && E % groups != 0) {
      throw new BadInput("--groups " + groups + " does not divide the " + E + " experts (EPLB's hierarchical policy needs it)");
    }
    List<Trace> evals = evalTraces.isEmpty() ? List.of() : Traces.load(evalTraces, E);
    for (Trace t : evals) {
      if (t.layers() != planTraces.get(0).layers()) {
        throw new BadInput(t.name() + ": " + t.layers() + " layers, the planning traces have " + planTraces.get(0).layers());
      }
    }
    PlacementProblem problem = Problems.fromTraces(planTraces, gpus, nodes, P);

    Map<String, PlanReport> plans = runPlanners(problem, compare ? ALGORITHMS : List.of(alg), unseen, locality, balanceSlack, err);

    stdout.println(describe("planned on", planTraces, problem));
    stdout.print(table(plans, problem, planTraces, net));
    if (!evals.isEmpty()) {
      PlacementProblem evalProblem = Problems.fromTraces(evals, gpus, nodes, P);
      stdout.println();
      stdout.println(describe("scored on (not planned on)", evals, evalProblem));
      stdout.print(table(plans, evalProblem, evals, net));
    }
    stdout.flush();

    if (this.out != null) {
      PlanReport chosen = plans.get(alg);
      if (chosen == null) throw new BadInput(IlpPlannerBridge.UNAVAILABLE + "; nothing written to " + this.out);
      PlacementWriter.write(chosen.placement(), fmt, this.out);
      err.println("moeyard plan: wrote " + alg + " plan to " + this.out + " (" + fmt.id + ")");
      err.flush();
    }
    return 0;
  }

  /** The options, checked and with --preset applied (sets {@link #groups}, {@link #hidden}, {@link #rule}). */
  private record Settings(String algorithm, PlacementFormat format, ModelPreset model, boolean unseen, Locality locality,
      double balanceSlack, Network net) {}

  /** Checks every option that needs no file; BadInput naming the first bad one. */
  private Settings validate(PrintWriter err) {
    String alg = algorithm.toLowerCase(Locale.ROOT);
    if (!ALGORITHMS.contains(alg)) throw new BadInput("--algorithm " + algorithm + " is not one of trivial, eplb, ilp");
    PlacementFormat fmt = PlacementFormat.byId(format);
    if (gpus <= 0) throw new BadInput("--gpus must be positive, got " + gpus);
    if (nodes <= 0) throw new BadInput("--nodes must be positive, got " + nodes);
    if (gpus % nodes != 0) throw new BadInput("--gpus " + gpus + " is not a multiple of --nodes " + nodes);
    if (replicas != null && replicas <= 0) throw new BadInput("--replicas must be positive, got " + replicas);
    if (replicas != null && replicas % gpus != 0) {
      throw new BadInput("--replicas " + replicas + " is not a multiple of --gpus " + gpus + " (P is the total slot count)");
    }
    ModelPreset model = preset == null ? null : ModelPreset.byId(preset);
    groups = groupsOption != null ? groupsOption : model != null ? model.groups : 1;
    hidden = hiddenOption != null ? hiddenOption : model != null ? model.hidden : Network.DEFAULT_HIDDEN;
    if (groups <= 0) throw new BadInput("--groups must be positive, got " + groups);
    if (hidden <= 0) throw new BadInput("--hidden must be positive, got " + hidden);
    if (experts < 0) throw new BadInput("--experts must be positive, got " + experts);
    if (!(timeLimit > 0)) throw new BadInput("--time-limit must be > 0 seconds, got " + timeLimit);
    if (workers < 0) throw new BadInput("--workers must be >= 0, got " + workers);
    if (this.out != null) {
      Path dir = this.out.toAbsolutePath().getParent();
      if (dir != null && !Files.isDirectory(dir)) throw new BadInput("--out " + this.out + ": directory " + dir + " does not exist");
      if (Files.isDirectory(this.out)) throw new BadInput("--out " + this.out + " is a directory");
    }
    try {
      rule = ReplicaRule.byId(replicaRule);
    } catch (IllegalArgumentException e) {
      throw new BadInput(e.getMessage());
    }
    String goal = robust.toLowerCase(Locale.ROOT);
    if (!goal.equals("worst") && !goal.equals("unseen")) throw new BadInput("--robust " + robust + " is not one of worst, unseen");
    boolean unseen = goal.equals("unseen");
    if (unseen && traces.size() < 2) {
      throw new BadInput("--robust unseen needs at least 2 --trace workloads to fit its forecast on, got " + traces.size());
    }
    Locality locality;
    try {
      locality = localityOption != null ? Locality.byId(localityOption) : unseen ? Locality.NODE : Locality.GPU;
    } catch (IllegalArgumentException e) {
      throw new BadInput(e.getMessage());
    }
    double balanceSlack = balanceSlackOption != null ? balanceSlackOption : IlpPlannerBridge.defaultBalanceSlack();
    if (!(balanceSlack >= 0 && balanceSlack <= 1)) throw new BadInput("--balance-slack must be in [0, 1], got " + balanceSlackOption);
    if (!compare && !alg.equals("ilp")) warnIlpOnlyOptions(alg, err);
    Network net = new Network(nodes, hidden, 2, nvlinkGbps, netGbps);
    if (!compare && alg.equals("ilp") && !IlpPlannerBridge.available()) throw new BadInput(IlpPlannerBridge.UNAVAILABLE);
    return new Settings(alg, fmt, model, unseen, locality, balanceSlack, net);
  }

  /** Runs each planner in {@code runs} on {@code problem}, in order; ilp is skipped with a note when OR-Tools cannot load. */
  private Map<String, PlanReport> runPlanners(PlacementProblem problem, List<String> runs, boolean unseen, Locality locality,
      double balanceSlack, PrintWriter err) {
    Map<String, PlanReport> plans = new LinkedHashMap<>();
    Placement eplb = null;
    for (String a : runs) {
      switch (a) {
        case "trivial" -> plans.put(a, Planners.timed("heuristic", () -> Planners.trivial(problem)));
        case "eplb" -> {
          int g = groups;
          PlanReport r = Planners.timed("heuristic", () -> Planners.eplb(problem, g));
          eplb = r.placement();
          plans.put(a, r);
        }
        case "ilp" -> {
          if (!IlpPlannerBridge.available()) {
            err.println("moeyard plan: ilp skipped: " + IlpPlannerBridge.UNAVAILABLE);
            err.flush();
            continue;
          }
          CpSatOptions opts = new CpSatOptions(timeLimit, workers, seed, line -> {
            err.println(line);
            err.flush();
          });
          if (unseen) {
            LoadForecast forecast = LoadForecast.of(problem.loads());
            err.println("moeyard plan: ilp " + forecast.describe() + "; --locality " + locality.id());
            err.flush();
            Placement warm = Planners.eplb(Problems.withLoads(problem, forecast.loads()), groups);
            plans.put(a, IlpPlannerBridge.planForUnseen(problem, forecast.loads(), warm, opts, rule, locality, balanceSlack));
          } else {
            Placement warm = eplb != null ? eplb : Planners.eplb(problem, groups);
            plans.put(a, IlpPlannerBridge.plan(problem, warm, opts, rule, locality, balanceSlack));
          }
        }
        default -> throw new IllegalStateException(a);
      }
    }
    return plans;
  }

  /** Options that only the ilp planner reads; given with another planner they would pass silently. */
  private static final List<String> ILP_ONLY = List.of("--robust", "--locality", "--balance-slack", "--time-limit", "--workers", "--seed");

  private void warnIlpOnlyOptions(String alg, PrintWriter err) {
    List<String> given = new ArrayList<>();
    for (String name : ILP_ONLY) if (spec.commandLine().getParseResult().hasMatchedOption(name)) given.add(name);
    if (given.isEmpty()) return;
    err.println("moeyard plan: warning: " + String.join(", ", given) + " only change --algorithm ilp; --algorithm " + alg
        + " ignores " + (given.size() == 1 ? "it" : "them"));
    err.flush();
  }

  private String describe(String what, List<Trace> ts, PlacementProblem p) {
    StringBuilder names = new StringBuilder();
    for (Trace t : ts) names.append(names.isEmpty() ? "" : ", ").append(t.name());
    return String.format(Locale.ROOT, "%s %s: %d layers x %d experts, %d GPUs on %d node(s), %d slots (%d per GPU), groups %d",
        what, names, p.layers(), p.experts(), p.gpus(), p.nodes(), p.slots(), p.slotsPerGpu(), groups);
  }

  /** Every plan scored on {@code ts}, in the order of {@code plans}. */
  private Map<String, PlanScores> score(Map<String, PlanReport> plans, PlacementProblem problem, List<Trace> ts, Network net) {
    List<RoutingTrace> routing = new ArrayList<>();
    for (Trace t : ts) if (t instanceof RoutingTrace r) routing.add(r);
    Map<String, PlanScores> out = new LinkedHashMap<>();
    long work = (long) plans.size() * routing.size() * problem.layers();
    long tokens = routing.stream().mapToLong(RoutingTrace::tokens).sum();
    try (Progress bar = Progress.start("scoring", work, tokens * problem.layers() > 2_000_000)) {
      for (Map.Entry<String, PlanReport> e : plans.entrySet()) {
        out.put(e.getKey(), PlanScores.of(problem, e.getValue().placement(), rule, routing, net, bar::step));
      }
    }
    return out;
  }

  private String table(Map<String, PlanReport> plans, PlacementProblem problem, List<Trace> ts, Network net) {
    return render(plans, score(plans, problem, ts, net), problem);
  }

  /** The report's table (and per-layer rows with --per-layer), from plans already scored. */
  private String render(Map<String, PlanReport> plans, Map<String, PlanScores> scored, PlacementProblem problem) {
    StringBuilder sb = new StringBuilder();
    StringBuilder layers = new StringBuilder();
    sb.append(String.format(Locale.ROOT, "%-8s %-34s %7s %8s %9s %16s %16s %9s %9s %9s%n",
        "algo", "status", "plan s", "bal mean", "bal worst", "x-GPU trans", "x-node trans", "NVLink GB", "net GB", "a2a ms"));
    for (Map.Entry<String, PlanReport> e : plans.entrySet()) {
      PlanReport r = e.getValue();
      PlanScores scores = scored.get(e.getKey());
      PlacementScore s = scores.score();
      String status = r.status();
      if (!Double.isNaN(r.gap())) status += String.format(Locale.ROOT, " gap %.1f%%", 100 * r.gap());
      String xg = "-", xn = "-", nv = "-", nt = "-", ms = "-";
      if (problem.hasAffinity()) {
        xg = String.format(Locale.ROOT, "%.0f (%.1f%%)", s.crossGpu(), 100 * s.crossGpuFraction());
        xn = String.format(Locale.ROOT, "%.0f (%.1f%%)", s.crossNode(), 100 * s.crossNodeFraction());
      }
      long[] layerIntra = scores.layerIntra(), layerInter = scores.layerInter();
      double[] layerSec = scores.layerSeconds();
      if (scores.replayed()) {
        nv = String.format(Locale.ROOT, "%.3f", scores.intraBytes() / 1e9);
        nt = String.format(Locale.ROOT, "%.3f", scores.interBytes() / 1e9);
        ms = String.format(Locale.ROOT, "%.2f", scores.seconds() * 1e3);
      }
      sb.append(String.format(Locale.ROOT, "%-8s %-34s %7.2f %8.3f %9.3f %16s %16s %9s %9s %9s%n",
          e.getKey(), status, r.seconds(), s.meanBalancedness(), s.worstBalancedness(), xg, xn, nv, nt, ms));
      if (perLayer) {
        for (var c : s.layers()) {
          boolean hasT = c.transitions() > 0, hasD = scores.replayed();
          layers.append(String.format(Locale.ROOT, "%-8s %5d %8.3f %9.3f %10s %10s %10s %10s %9s%n", e.getKey(), c.layer(),
              c.meanBalancedness(), c.worstBalancedness(),
              hasT ? String.format(Locale.ROOT, "%.1f%%", 100 * c.crossGpu() / c.transitions()) : "-",
              hasT ? String.format(Locale.ROOT, "%.1f%%", 100 * c.crossNode() / c.transitions()) : "-",
              hasD ? String.format(Locale.ROOT, "%.1f", layerIntra[c.layer()] / 1e6) : "-",
              hasD ? String.format(Locale.ROOT, "%.1f", layerInter[c.layer()] / 1e6) : "-",
              hasD ? String.format(Locale.ROOT, "%.3f", layerSec[c.layer()] * 1e3) : "-"));
        }
      }
    }
    if (perLayer) {
      sb.append(String.format(Locale.ROOT, "%n%-8s %5s %8s %9s %10s %10s %10s %10s %9s%n",
          "algo", "layer", "bal mean", "bal worst", "x-GPU ->", "x-node ->", "NVLink MB", "net MB", "a2a ms"));
      sb.append(layers).append('\n');
    }
    for (Map.Entry<String, PlanReport> e : plans.entrySet()) {
      PlanReport r = e.getValue();
      if (!Double.isNaN(r.objective())) {
        sb.append(String.format(Locale.ROOT, "%s: objective %.6g, bound %.6g, gap %.2f%% (%s)%n",
            e.getKey(), r.objective(), r.bound(), 100 * r.gap(), r.status()));
      }
    }
    if (!problem.hasAffinity()) sb.append("(load-only traces: no transitions or dispatch bytes)\n");
    else {
      sb.append("bal: mean GPU load / max GPU load over layers x workloads; x-GPU / x-node: layer-to-layer expert\n");
      sb.append(rule == ReplicaRule.UNIFORM
          ? "pairs on different GPUs / nodes, expected with each replica equally likely (--replica-rule uniform);\n"
          : "pairs with no replica of a and of b on one GPU / node (--replica-rule nearest);\n");
      sb.append("GB and a2a ms: dedup'd BF16 dispatch rows over all layers,\n");
      sb.append("summed over traces (each GPU a contiguous block of the trace, the data path's replica rule).\n");
    }
    return sb.toString();
  }
}
