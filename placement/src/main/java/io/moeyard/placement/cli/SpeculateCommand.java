package io.moeyard.placement.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moeyard.placement.cost.Network;
import io.moeyard.placement.format.PlacementFormat;
import io.moeyard.placement.format.PlacementReader;
import io.moeyard.placement.format.PlacementWriter;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.speculate.AffinityModel;
import io.moeyard.placement.speculate.Assignments;
import io.moeyard.placement.speculate.ExpertGrouping;
import io.moeyard.placement.speculate.SpeculationReport;
import io.moeyard.placement.speculate.SpeculativeShuffler;
import io.moeyard.placement.trace.NpyWriter;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.Traces;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moeyard speculate}: learn affinity on one trace, place the tokens of another ahead of each layer. */
@Command(
    name = "speculate",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description =
        "Learn which experts follow which from --train, then place the tokens of --eval layer by layer on the rank"
            + " that most likely holds their next experts, using only their routing at earlier layers, with every rank"
            + " within 10%% of the mean token count. Without --placement, group experts that tokens use together"
            + " (balanced) and use that placement. Reports local activations (home vs speculative), prediction"
            + " accuracy, tokens per rank, expert load balancedness and cross-rank bytes. Bad input exits with code 2"
            + " and writes no file.")
public final class SpeculateCommand implements Callable<Integer> {
  private static final ObjectMapper JSON = new ObjectMapper();

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(names = "--train", paramLabel = "TRAIN.npy", required = true,
      description = "Per-token .npy trace [tokens, layers, topk] to learn from; repeat to pool several.")
  List<Path> train;

  @Option(names = "--eval", paramLabel = "EVAL.npy", required = true, description = "Per-token .npy trace to place and score.")
  Path eval;

  @Option(names = "--gpus", paramLabel = "G", required = true, description = "GPUs (EP ranks).")
  int gpus;

  @Option(names = "--nodes", paramLabel = "N", defaultValue = "1",
      description = "Nodes the GPUs are spread over (G / N consecutive ranks each): the report counts rows crossing nodes, and the"
          + " default objective keeps them down (default ${DEFAULT-VALUE}).")
  int nodes;

  @Option(names = "--speculate-objective", paramLabel = "ranks|nodes",
      description = "What the assignment minimises: ranks = rows between ranks (expected local activations); nodes = rows"
          + " crossing nodes, each weighing " + (int) SpeculativeShuffler.NODE_ROW_WEIGHT + " rows between ranks, plus rows"
          + " between ranks. Default: nodes when --nodes > 1, else ranks (the same with one node).")
  String objective;

  @Option(names = "--placement", paramLabel = "P.json", description = "Placement in force (sglang, eplb or vllm-ascend JSON); default: group experts from --train.")
  Path placementIn;

  @Option(names = "--placement-out", paramLabel = "P.json", description = "Write the grouped placement here (SGLang JSON, physical_to_logical_map).")
  Path placementOut;

  @Option(names = "--replicas", paramLabel = "P",
      description = "Grouping: TOTAL slots per layer, a multiple of G, at least E (default: the smallest multiple of G that holds every expert).")
  Integer replicas;

  @Option(names = "--min-balance", paramLabel = "B", defaultValue = "" + ExpertGrouping.MIN_BALANCE,
      description = "Grouping: lowest balancedness (mean / max GPU load on --train) it may trade for co-location, unless EPLB's own is lower (default ${DEFAULT-VALUE}).")
  double minBalance;

  @Option(names = "--assignments", paramLabel = "OUT.npy", description = "Write int32 [tokens, layers]: each eval token's rank at each layer's dispatch (layer 0: home).")
  Path assignmentsOut;

  @Option(names = "--json", paramLabel = "OUT.json", description = "Write the report as JSON.")
  Path jsonOut;

  @Option(names = "--model-out", paramLabel = "M.json", description = "Write the affinity model learnt from --train (format in io.moeyard.placement.speculate.AffinityModel).")
  Path modelOut;

  @Option(names = "--experts", paramLabel = "E", defaultValue = "0",
      description = "Logical experts per layer; default: largest id + 1, which must then agree between the traces.")
  int experts;

  @Option(names = "--hidden", paramLabel = "H", defaultValue = "" + Network.DEFAULT_HIDDEN, description = "Hidden size for bytes (BF16 rows) (default ${DEFAULT-VALUE}).")
  int hidden;

  /** The objective in force: --speculate-objective, or its default for --nodes. */
  private SpeculativeShuffler.Objective goal;

  @Override
  public Integer call() throws Exception {
    PrintWriter err = spec.commandLine().getErr();
    return BadInput.guard("moeyard speculate", err, () -> run(spec.commandLine().getOut(), err));
  }

  private int run(PrintWriter stdout, PrintWriter err) throws Exception {
    if (gpus <= 0) throw new BadInput("--gpus must be positive, got " + gpus);
    if (hidden <= 0) throw new BadInput("--hidden must be positive, got " + hidden);
    if (nodes <= 0 || gpus % nodes != 0) throw new BadInput("--nodes " + nodes + " does not divide --gpus " + gpus);
    try {
      goal = objective == null ? SpeculativeShuffler.Objective.defaultFor(nodes) : SpeculativeShuffler.Objective.parse(objective);
    } catch (IllegalArgumentException e) {
      throw new BadInput("--speculate-objective " + objective + ": want ranks or nodes");
    }
    if (experts < 0) throw new BadInput("--experts must be positive, got " + experts);
    if (placementIn != null && placementOut != null) throw new BadInput("--placement and --placement-out exclude each other: one is read, the other is grouped and written");
    if (placementIn != null && replicas != null) throw new BadInput("--replicas is for grouping; --placement " + placementIn + " already fixes the slots");
    if (!(minBalance > 0 && minBalance <= 1)) throw new BadInput("--min-balance must be in (0, 1], got " + minBalance);
    if (replicas != null && (replicas <= 0 || replicas % gpus != 0)) {
      throw new BadInput("--replicas " + replicas + " is not a positive multiple of --gpus " + gpus + " (P is the total slot count)");
    }
    for (Path out : new Path[] {placementOut, assignmentsOut, jsonOut, modelOut}) checkOut(out);

    List<RoutingTrace> trainTraces = new ArrayList<>();
    for (Path f : train) trainTraces.add(routing(f));
    RoutingTrace evalTrace = routing(eval);
    List<RoutingTrace> all = new ArrayList<>(trainTraces);
    all.add(evalTrace);
    int L = evalTrace.layers();
    for (RoutingTrace t : all) {
      if (t.layers() != L) {
        throw new BadInput("layer counts disagree: " + t.name() + " has " + t.layers() + " layers, " + evalTrace.name() + " has " + L + " layers");
      }
    }
    int E = experts;
    if (E == 0) {
      E = evalTrace.experts();
      for (RoutingTrace t : all) {
        if (t.experts() != E) {
          throw new BadInput("expert counts disagree: " + t.name() + " has ids up to " + (t.experts() - 1) + " (" + t.experts() + " experts), "
              + evalTrace.name() + " up to " + (E - 1) + " (" + E + " experts); pass --experts if they are one model");
        }
      }
    } else {
      // ids were read without a bound; bind them now so an id >= E is named
      List<RoutingTrace> bound = new ArrayList<>();
      for (RoutingTrace t : all) bound.add(new RoutingTrace(t.name(), t.tokens(), t.layers(), t.topk(), E, t.ids()));
      all = bound;
      evalTrace = bound.get(bound.size() - 1);
      trainTraces = bound.subList(0, bound.size() - 1);
    }
    int G = gpus;

    long work = (long) (placementIn == null ? 2 : 1) * L;
    Placement placement;
    AffinityModel model;
    Assignments assigned;
    try (Progress bar = Progress.start("speculate", work, (long) evalTrace.tokens() * L > 2_000_000)) {
      if (placementIn != null) {
        placement = PlacementReader.read(placementIn, G, E);
        if (placement.layers() != L || placement.experts() != E) {
          throw new BadInput(placementIn + ": placement has " + placement.layers() + " layers x " + placement.experts() + " experts, the traces "
              + L + " x " + E);
        }
      } else {
        int P = replicas != null ? replicas : ((E + G - 1) / G) * G;
        if (P < E) throw new BadInput("--replicas " + P + " gives fewer slots than the " + E + " experts");
        placement = ExpertGrouping.plan(trainTraces, G, P, minBalance, l -> bar.step());
      }
      model = AffinityModel.learn(trainTraces);
      assigned = new SpeculativeShuffler(model, placement, nodes, goal).assign(evalTrace, l -> bar.step());
    }
    SpeculationReport r = SpeculationReport.measure(evalTrace, placement, assigned, nodes, (long) hidden * 2);
    long trainTokens = trainTraces.stream().mapToLong(RoutingTrace::tokens).sum();
    stdout.print(describe(r, trainTraces, evalTrace, trainTokens, placement));
    stdout.flush();

    if (placementOut != null) {
      PlacementWriter.write(placement, PlacementFormat.SGLANG, placementOut);
      note(err, "wrote the grouped placement to " + placementOut + " (sglang)");
    }
    if (modelOut != null) {
      model.write(modelOut);
      note(err, "wrote the affinity model to " + modelOut);
    }
    if (assignmentsOut != null) {
      int[] shape = {assigned.tokens(), assigned.layers()};
      PlacementWriter.writeAtomically(assignmentsOut, os -> NpyWriter.write(os, shape, assigned.rank(), true));
      note(err, "wrote assignments [" + shape[0] + ", " + shape[1] + "] int32 to " + assignmentsOut);
    }
    if (jsonOut != null) {
      ObjectNode j = json(r, trainTraces, evalTrace, placement);
      PlacementWriter.writeAtomically(jsonOut, os -> JSON.writerWithDefaultPrettyPrinter().writeValue(os, j));
      note(err, "wrote the report to " + jsonOut);
    }
    return 0;
  }

  private static void note(PrintWriter err, String line) {
    err.println("moeyard speculate: " + line);
    err.flush();
  }

  private static void checkOut(Path out) {
    if (out == null) return;
    Path dir = out.toAbsolutePath().getParent();
    if (dir != null && !Files.isDirectory(dir)) throw new BadInput(out + ": directory " + dir + " does not exist");
    if (Files.isDirectory(out)) throw new BadInput(out + " is a directory");
  }

  private static RoutingTrace routing(Path f) throws java.io.IOException {
    Trace t = Traces.load(f, 0);
    if (t instanceof RoutingTrace r) return r;
    throw new BadInput(f + ": a load-only trace (logical_count) has no per-token routing to learn from or place; give a .npy [tokens, layers, topk]");
  }

  private String describe(SpeculationReport r, List<RoutingTrace> trainTraces, RoutingTrace evalTrace, long trainTokens, Placement p) {
    StringBuilder sb = new StringBuilder();
    List<String> names = trainTraces.stream().map(RoutingTrace::name).toList();
    sb.append(String.format(Locale.ROOT, "trained on %s (%d tokens); placed %s (%d tokens); %d layers x %d experts, top-%d; %d GPUs, %d slots (%s)%n",
        String.join(" + ", names), trainTokens, evalTrace.name(), r.tokens(), r.layers(), p.experts(), evalTrace.topk(), r.gpus(),
        p.slots(), placementIn != null ? "placement " + placementIn : "grouped"));
    if (r.nodes() > 1) {
      sb.append(String.format(Locale.ROOT, "%d nodes x %d GPUs; objective: %s%n", r.nodes(), r.gpus() / r.nodes(),
          goal.name().toLowerCase(Locale.ROOT)));
    }
    sb.append(String.format(Locale.ROOT, "%-34s %12s %12s%n", "", "home", "speculative"));
    sb.append(String.format(Locale.ROOT, "%-34s %11.1f%% %11.1f%%   (best rank per token: %.1f%%)%n", "local activations",
        100 * r.localHome(), 100 * r.localSpeculative(), 100 * r.localBest()));
    sb.append(String.format(Locale.ROOT, "%-34s %12s %11.1f%%   (rank given, after capacities: %.1f%%)%n", "prediction accuracy", "-",
        100 * r.predictionAccuracy(), 100 * r.assignedAccuracy()));
    sb.append(String.format(Locale.ROOT, "%-34s %12.3f %12.3f%n", "tokens per rank max/mean", homeMaxOverMean(r), r.maxOverMeanTokens()));
    sb.append(String.format(Locale.ROOT, "%-34s %12d %12d%n", "cross-rank rows, dispatch", r.dispatchRowsHome(), r.dispatchRowsSpeculative()));
    sb.append(String.format(Locale.ROOT, "%-34s %12d %12d%n", "cross-rank rows, combine", r.combineRowsHome(), r.combineRowsSpeculative()));
    if (r.nodes() > 1) {
      sb.append(String.format(Locale.ROOT, "%-34s %12d %12d%n", "cross-node rows, dispatch (relay)", r.dispatchNodeRowsHome(),
          r.dispatchNodeRowsSpeculative()));
      sb.append(String.format(Locale.ROOT, "%-34s %12d %12d%n", "cross-node rows, combine (relay)", r.dispatchNodeRowsHome(),
          r.dispatchNodeRowsSpeculative()));
      sb.append(String.format(Locale.ROOT, "%-34s %12d %12d%n", "cross-node rows, forwards", 0, r.forwardNodeRowsSpeculative()));
      sb.append(String.format(Locale.ROOT, "%-34s %12d %12d   (%+.1f%%)%n", "cross-node rows, all", r.nodeRowsHome(), r.nodeRowsSpeculative(),
          r.nodeRowsHome() == 0 ? 0 : 100.0 * (r.nodeRowsSpeculative() - r.nodeRowsHome()) / r.nodeRowsHome()));
    }
    sb.append(String.format(Locale.ROOT, "%-34s %12.3f %12.3f   (%+.1f%%)%n", "cross-rank GB (BF16, hidden " + hidden + ")", r.bytesHome() / 1e9,
        r.bytesSpeculative() / 1e9, r.bytesHome() == 0 ? 0 : 100.0 * (r.bytesSpeculative() - r.bytesHome()) / r.bytesHome()));
    sb.append(String.format(Locale.ROOT, "expert load balancedness on the eval trace (mean / max GPU load): mean %.3f, worst layer %.3f%n",
        r.balancednessMean(), r.balancednessWorst()));
    sb.append(String.format(Locale.ROOT, "local activations %.2fx home; home: token t of T on rank t*G/T; local = the expert has a replica on the token's rank%n",
        r.localHome() == 0 ? Double.NaN : r.localSpeculative() / r.localHome()));
    return sb.toString();
  }

  private static double homeMaxOverMean(SpeculationReport r) {
    int most = (r.tokens() + r.gpus() - 1) / r.gpus();
    // contiguous blocks of t * G / T: the largest holds ceil(T / G) tokens
    return most / ((double) r.tokens() / r.gpus());
  }

  private ObjectNode json(SpeculationReport r, List<RoutingTrace> trainTraces, RoutingTrace evalTrace, Placement p) {
    ObjectNode j = JSON.createObjectNode();
    ArrayNode tr = j.putArray("train");
    for (RoutingTrace t : trainTraces) tr.add(t.name());
    j.put("eval", evalTrace.name());
    j.put("tokens", r.tokens());
    j.put("layers", r.layers());
    j.put("experts", p.experts());
    j.put("topk", evalTrace.topk());
    j.put("gpus", r.gpus());
    j.put("slots", p.slots());
    j.put("placement", placementIn != null ? placementIn.toString() : "grouped");
    j.put("activations", r.activations());
    ObjectNode local = j.putObject("local_activation_rate");
    local.put("home", r.localHome());
    local.put("speculative", r.localSpeculative());
    local.put("best_rank", r.localBest());
    j.put("prediction_accuracy", r.predictionAccuracy());
    j.put("assigned_accuracy", r.assignedAccuracy());
    ObjectNode tpr = j.putObject("tokens_per_rank_max_over_mean");
    tpr.put("home", homeMaxOverMean(r));
    tpr.put("speculative", r.maxOverMeanTokens());
    ObjectNode bal = j.putObject("expert_load_balancedness");
    bal.put("mean", r.balancednessMean());
    bal.put("worst", r.balancednessWorst());
    ObjectNode rows = j.putObject("cross_rank_rows");
    rows.putObject("home").put("dispatch", r.dispatchRowsHome()).put("combine", r.combineRowsHome());
    rows.putObject("speculative").put("dispatch", r.dispatchRowsSpeculative()).put("combine", r.combineRowsSpeculative());
    j.put("nodes", r.nodes());
    j.put("objective", goal.name().toLowerCase(Locale.ROOT));
    ObjectNode nodeRows = j.putObject("cross_node_rows");
    nodeRows.putObject("home").put("dispatch", r.dispatchNodeRowsHome()).put("combine", r.dispatchNodeRowsHome()).put("forward", 0);
    nodeRows.putObject("speculative").put("dispatch", r.dispatchNodeRowsSpeculative()).put("combine", r.dispatchNodeRowsSpeculative())
        .put("forward", r.forwardNodeRowsSpeculative());
    ObjectNode bytes = j.putObject("cross_rank_bytes");
    bytes.put("hidden", hidden);
    bytes.put("home", r.bytesHome());
    bytes.put("speculative", r.bytesSpeculative());
    return j;
  }
}
