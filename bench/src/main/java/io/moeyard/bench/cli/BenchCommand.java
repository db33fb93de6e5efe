package io.moeyard.bench.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moeyard.bench.run.BenchConfig;
import io.moeyard.bench.run.BenchResult;
import io.moeyard.bench.run.CpuBench;
import io.moeyard.bench.run.CudaBench;
import io.moeyard.bench.run.HostMemory;
import io.moeyard.bench.run.LayerRun;
import io.moeyard.bench.run.TraceRouting;
import io.moeyard.cuda.CudaAvailability;
import io.moeyard.cuda.CudaBackend;
import io.moeyard.engine.DType;
import io.moeyard.engine.ModelPreset;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.Traces;
import io.moeyard.placement.format.PlacementWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moeyard bench}: the standalone all-to-all benchmark. */
@Command(
    name = "bench",
    mixinStandardHelpOptions = true,
    description = {
      "The all-to-all benchmark: fused vs unfused dispatch and combine vs a plain copy, verified.",
      "",
      "Runs dispatch and combine, fused and unfused, on random routing; verifies them against each other and a",
      "naive reference; prints median time, GB/s (DeepEP's bytes received per rank: one row per token-rank pair,",
      "self included), the fused/unfused ratio and the roofline (a plain copy of the same bytes, same threads, same run)."
    })
public final class BenchCommand implements Callable<Integer> {
  @Option(names = "--backend", description = "cpu (embedded, default) or cuda (R virtual ranks on GPU 0; exit 3 when unavailable)", defaultValue = "cpu")
  String backend;

  @Option(names = "--preset", description = "model shape: ${COMPLETION-CANDIDATES}; sets hidden, experts, top-k, 8 ranks, 4096 tokens",
      completionCandidates = PresetNames.class)
  String preset;

  @Option(names = "--ranks", description = "ranks (threads on the cpu backend, virtual ranks on GPU 0 on cuda); default 8")
  Integer ranks;

  @Option(names = "--procs", paramLabel = "N", description = "run the bench with N rank processes (moeyard launch starts"
      + " them; each builds the same inputs from --seed) instead of N rank threads (cpu) or N virtual ranks (cuda: one GPU,"
      + " peers through CUDA IPC); host meetings over shared memory; sets --ranks; with --layers [--speculate] the layer"
      + " stack runs on the rank processes (cpu), rank 0 printing the same table")
  Integer procs;

  /** Set on the rank processes of --procs: this process is one rank (torchrun variables), not the launcher. */
  @Option(names = "--procs-rank", hidden = true)
  boolean procsRank;

  @Option(names = "--machines", paramLabel = "K", defaultValue = "1", description = "with --procs N: the world spans K machines,"
      + " each running this command with its own --machine-rank (N ranks per machine, --nodes per machine); nodes cross"
      + " machines only with the node-level path's messages, so the unfused baseline (which stores into every rank) is not"
      + " run; default ${DEFAULT-VALUE}")
  int machines;

  @Option(names = "--machine-rank", paramLabel = "I", defaultValue = "0",
      description = "with --machines: this machine's index in [0, K); machine 0 runs rank 0, which prints the results")
  int machineRank;

  @Option(names = "--master-addr", paramLabel = "HOST", description = "with --machines: the host of machine 0, reachable from every machine")
  String masterAddr;

  @Option(names = "--master-port", paramLabel = "P", description = "with --machines: the port of rank 0's store, the same on every machine")
  Integer masterPort;

  @Option(names = "--machine-name", paramLabel = "NAME", description = "with --procs: the machine name this command's ranks"
      + " give (default: host name and boot id); commands on one host with different names rehearse several machines")
  String machineName;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--nodes", description = "nodes the ranks are spread over (ranks / nodes each): the replica rule prefers"
      + " the token's node, and the rows block counts rows that cross nodes; default 1")
  int nodes = 1;

  @Option(names = "--node-path", paramLabel = "relay|direct", description = "how the fused path crosses nodes:"
      + " relay (default: each token once per remote node, to the rank with its local index there, which fans it out) or"
      + " direct (each token to every rank that needs it); the same path on one node")
  String nodePath = "relay";

  @Option(names = "--tokens", description = "tokens per rank; default 1024 (4096 with --preset)")
  Integer tokens;

  @Option(names = "--hidden", description = "hidden size (channels per token); default 2048")
  Integer hidden;

  @Option(names = "--experts", description = "logical experts (divisible by ranks); default 64")
  Integer experts;

  @Option(names = "--topk", description = "experts per token; default 8")
  Integer topk;

  @Option(names = "--dtype", description = "bf16 (default), fp16, fp32 or fp8 (e4m3 + one scale per 128 channels; combine in bf16)")
  String dtype;

  @Option(names = "--iters", description = "timed iterations per measurement (median reported); default ${DEFAULT-VALUE}", defaultValue = "20")
  int iters;

  @Option(names = "--warmup", description = "untimed iterations first, and at least 1 s of them (1 s per process with --procs) unless 0; default ${DEFAULT-VALUE}", defaultValue = "10")
  int warmup;

  @Option(names = "--chunk", description = "pipelining chunk in token-rank pairs; default ${DEFAULT-VALUE}", defaultValue = "128")
  int chunk;

  @Option(names = "--seed", description = "routing and payload seed; default ${DEFAULT-VALUE}", defaultValue = "1")
  long seed;

  @Option(names = "--json", description = "also write the results as JSON to this file")
  Path json;

  @Option(names = "--placement", description = "dispatch on a plan's slots and replicas (moeyard plan's SGLang / EPLB JSON;"
      + " its layer --layer): the plan's GPUs are the ranks, its slots must divide among them, its layer and expert counts"
      + " must match --trace")
  Path placement;

  @Option(names = "--trace", description = "route by a measured per-token trace (.npy [tokens, layers, topk], e.g. shared/data/esft/law.npy)"
      + " instead of uniform random experts: rank r takes the trace's tokens [r*T, (r+1)*T); experts and top-k come from the trace,"
      + " --tokens defaults to the trace split evenly")
  Path trace;

  @Option(names = "--routing-out", description = "also write the routing as a [ranks, tokens, topk] .npy"
      + " (bench/gpu/torch_baseline.py --routing reads it: the PyTorch baseline then routes exactly as this run);"
      + " with --machines, machine 0 writes it")
  Path routingOut;

  @Option(names = "--layer", description = "with --trace: the layer whose routing is used; default ${DEFAULT-VALUE}", defaultValue = "0")
  int layer;

  @Option(names = "--layers", description = "with --trace: run layers A..B-1 one after another (A:B), every token routed by the"
      + " trace at every layer, the combine output feeding the next layer (cpu backend, node relay); prints where rows went and the"
      + " collectives' time; on rank threads (--ranks), or rank processes with --procs N [--nodes M] [--machines K"
      + " --machine-rank I --master-addr H --master-port P], whose ranks must agree on the trace, model and placement"
      + " (checksums of the files)")
  String layers;

  @Option(names = "--speculate", description = "with --layers: also run with speculative token shuffling (an affinity model"
      + " from moeyard speculate --model-out): each layer's combine moves tokens to the rank chosen for their next layer;"
      + " the outputs must equal the run without it, bit for bit (a digest of every token's final row, compared by rank 0);"
      + " every rank derives the token assignment itself, and the ranks check that they derived the same")
  Path speculate;

  @Option(names = "--speculate-objective", paramLabel = "ranks|nodes", description = "with --speculate: what the token"
      + " assignment minimises: ranks = rows between ranks (expected local activations), nodes = rows crossing nodes, each"
      + " weighing " + (int) io.moeyard.placement.speculate.SpeculativeShuffler.NODE_ROW_WEIGHT + " rows between ranks, plus rows between ranks; default nodes when --nodes > 1, else ranks (the same with one node)")
  String speculateObjective;

  /**
   * Tests only: flips one bit of one final row of this rank in the --speculate run, so that the
   * identity check must say DIFFERENT (a check that cannot fail proves nothing).
   */
  @Option(names = "--corrupt-final-row", hidden = true, defaultValue = "-1")
  int corruptRank;

  static final class PresetNames implements Iterable<String> {
    @Override
    public java.util.Iterator<String> iterator() {
      return java.util.Arrays.stream(ModelPreset.values()).map(p -> p.id).iterator();
    }
  }

  @Override
  public Integer call() throws IOException {
    if (procs == null && !procsRank
        && (machines != 1 || machineRank != 0 || masterAddr != null || masterPort != null || machineName != null)) {
      System.err.println("moeyard bench: --machines, --machine-rank, --master-addr, --master-port and --machine-name"
          + " place rank processes: they need --procs N");
      return 2;
    }
    if (procs != null && !procsRank) return launchProcs();
    if (layers != null || speculate != null) return layerRun();
    BenchConfig config = checkedConfig(false);
    if (config == null) return 2;
    BenchResult result;
    switch (backend.toLowerCase(Locale.ROOT)) {
      case "cpu" -> {
        if (procsRank) {
          result = io.moeyard.bench.run.ProcBench.runRank(config, machines > 1, System.err);
          if (result == null) return 0; // rank 0 reports for all
          print(result, System.out);
          if (json != null) writeJson(result, json);
          return result.verified() ? 0 : 1;
        }
        String memory = HostMemory.problem(config);
        if (memory != null) {
          System.err.println("moeyard bench: " + memory);
          return 2;
        }
        result = CpuBench.run(config, System.err);
      }
      case "cuda" -> {
        if (procsRank) {
          // the launcher checked this machine; a rank without CUDA still meets the others, which
          // then fail with it at once instead of at the rendezvous's timeout
          try {
            result = io.moeyard.bench.run.ProcCudaBench.runRank(config, machines > 1, System.err);
          } catch (io.moeyard.cuda.CudaUnavailableException e) {
            System.err.println("moeyard bench: " + e.getMessage());
            return 3;
          }
          if (result == null) return 0; // rank 0 reports for all
          print(result, System.out);
          if (json != null) writeJson(result, json);
          return result.verified() ? 0 : 1;
        }
        int refused = cudaRefused(config);
        if (refused != 0) return refused;
        result = CudaBench.run(config, System.err);
      }
      default -> {
        System.err.println("moeyard bench: unknown --backend '" + backend + "' (cpu or cuda)");
        return 2;
      }
    }
    print(result, System.out);
    if (json != null) writeJson(result, json);
    return result.verified() ? 0 : 1;
  }

  /**
   * The run's config from the flags, checked (and, when {@code hostMemory}, against this host's
   * memory), with {@code --routing-out} written; null when refused, the reason printed.
   */
  private BenchConfig checkedConfig(boolean hostMemory) {
    BenchConfig config;
    try {
      config = config();
    } catch (IllegalArgumentException e) {
      System.err.println("moeyard bench: " + e.getMessage());
      return null;
    }
    String problem = config.problem();
    if (problem == null && hostMemory) problem = HostMemory.problem(config, procs == null ? 0 : procs);
    if (problem != null) {
      System.err.println("moeyard bench: " + problem);
      return null;
    }
    if (routingOut != null && machineRank == 0) { // with --machines, the world's routing once, as its JSON
      try {
        config.writeRouting(routingOut);
      } catch (IOException | ArithmeticException e) {
        System.err.println("moeyard bench: cannot write --routing-out " + routingOut + ": " + e.getMessage());
        return null;
      }
    }
    return config;
  }

  /** 3 (said why) where the cuda backend cannot run here, 2 where it cannot take the shape, else 0. */
  private static int cudaRefused(BenchConfig config) {
    CudaAvailability av = CudaBackend.availability();
    if (!av.available()) {
      System.err.println("moeyard bench: " + av.message());
      return 3;
    }
    String cudaProblem = CudaBench.problem(config);
    if (cudaProblem != null) {
      System.err.println("moeyard bench: " + cudaProblem);
      return 2;
    }
    return 0;
  }

  /**
   * --procs N: checks the options here, then starts N rank processes of this same command line
   * (without --procs, with --ranks N) under {@link RankProcesses}; rank 0's table is this
   * command's output.
   */
  private int launchProcs() throws IOException {
    String bad = null;
    if (procs < 1) bad = "--procs must be at least 1, got " + procs;
    else if (!backend.equalsIgnoreCase("cpu") && !backend.equalsIgnoreCase("cuda")) bad = "unknown --backend '" + backend + "' (cpu or cuda)";
    else if (nodes < 1 || procs % nodes != 0) bad = "--nodes must divide --procs (" + procs + "), got " + nodes;
    else if (machines < 1) bad = "--machines must be at least 1, got " + machines;
    else if (machineRank < 0 || machineRank >= machines) bad = "--machine-rank " + machineRank + " is outside [0, " + machines + ")";
    else if (machines > 1 && masterPort == null) bad = "--machines " + machines + " needs --master-port: every machine names the same port of machine 0";
    else if (machines > 1 && (masterAddr == null || masterAddr.isBlank())) bad = "--machines " + machines + " needs --master-addr: the host of machine 0";
    else if (masterPort != null && (masterPort < 1 || masterPort > 65535)) bad = "--master-port " + masterPort + " is outside [1, 65535]";
    else if (machineName != null && machineName.isBlank()) bad = "--machine-name must not be blank";
    else if (machines > 1 && !nodePath.equalsIgnoreCase("relay")) {
      bad = "--node-path " + nodePath + " stores into every rank's memory; between machines only the node-level path (relay) runs";
    }
    else if (ranks != null && ranks != (long) procs * machines) bad = "--procs " + procs + " on " + machines + " machine(s) runs " + (long) procs * machines + " ranks; --ranks " + ranks + " disagrees";
    else if ((long) procs * machines > 4096) bad = "--procs " + procs + " x --machines " + machines + " ranks is too many";
    if (bad != null) {
      System.err.println("moeyard bench: " + bad);
      return 2;
    }
    ranks = procs * machines;
    nodes = nodes * machines;
    if (layers != null || speculate != null) {
      // checked here, once, before any rank starts; every rank checks again and agrees on them
      try {
        layerInputs(ranks, nodes);
      } catch (IllegalArgumentException | IOException ex) {
        System.err.println("moeyard bench: " + ex.getMessage());
        return 2;
      }
    } else {
      BenchConfig config = checkedConfig(true); // --routing-out here, once, not by every rank
      if (config == null) return 2;
      if (backend.equalsIgnoreCase("cuda")) {
        int refused = cudaRefused(config); // said once here rather than by every rank process
        if (refused != 0) return refused;
      }
    }
    // the whole command line, "bench" included, less what the launcher settles here
    java.util.Set<String> launcherOnly = java.util.Set.of("--procs", "--ranks", "--nodes", "--routing-out", "--machine-rank",
        "--master-addr", "--master-port", "--machine-name");
    java.util.List<String> args = new java.util.ArrayList<>();
    java.util.List<String> given = spec.commandLine().getParseResult().originalArgs();
    for (int i = 0; i < given.size(); i++) {
      String a = given.get(i);
      if (launcherOnly.contains(a)) {
        i++;
        continue;
      }
      int eq = a.indexOf('=');
      if (eq > 0 && launcherOnly.contains(a.substring(0, eq))) continue;
      args.add(a);
    }
    args.addAll(java.util.List.of("--ranks", Integer.toString(ranks), "--nodes", Integer.toString(nodes), "--procs-rank"));
    int port;
    if (masterPort != null) {
      port = masterPort;
    } else {
      try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
        port = s.getLocalPort();
      }
    }
    var out = new java.io.PrintWriter(new java.io.OutputStreamWriter(System.out, java.nio.charset.StandardCharsets.UTF_8), true);
    var err = new java.io.PrintWriter(new java.io.OutputStreamWriter(System.err, java.nio.charset.StandardCharsets.UTF_8), true);
    return new RankProcesses(out, err, true, machineName).run(RankProcesses.sameJvm(args), procs, machineRank * procs, ranks,
        ranks / nodes, masterAddr == null ? "127.0.0.1" : masterAddr, port);
  }

  /**
   * --layers [--speculate]: the multi-layer run (LayerRun), on rank threads, or as one rank process
   * of --procs (the launcher checked the options; every rank checks them again, alike).
   */
  private int layerRun() throws IOException {
    LayerRun.Result res;
    try {
      LayerRun.Inputs in = layerInputs(ranks != null ? ranks : 8, nodes);
      int n = layerIters();
      if (procsRank) {
        res = LayerRun.runRank(in, layerAgreement(in), machines > 1, n, System.err, corruptRank);
        if (res == null) return 0; // rank 0 reports for all
      } else {
        res = LayerRun.run(in, n, System.err, corruptRank);
      }
    } catch (IllegalArgumentException | IOException ex) {
      System.err.println("moeyard bench: " + ex.getMessage());
      return 2;
    }
    printLayers(res, System.out);
    if (json != null) writeLayersJson(res, json);
    return res.identical() ? 0 : 1;
  }

  /** The default --iters suits one layer; a layer stack runs longer. */
  private int layerIters() {
    return iters == 20 ? 3 : iters;
  }

  /**
   * The --layers run's inputs for {@code r} ranks in {@code nodes} nodes, every option checked:
   * IllegalArgumentException naming the first bad value.
   */
  private LayerRun.Inputs layerInputs(int r, int nodes) throws IOException {
    if (layers == null) throw new IllegalArgumentException("--speculate needs --layers A:B");
    if (trace == null) throw new IllegalArgumentException("--layers needs --trace");
    if (!backend.equalsIgnoreCase("cpu")) throw new IllegalArgumentException("--layers runs on the cpu backend only, got --backend " + backend);
    if (routingOut != null) throw new IllegalArgumentException("--routing-out " + routingOut + " writes one layer's routing; --layers does not take it");
    if (iters < 1) throw new IllegalArgumentException("--iters must be at least 1, got " + iters);
    if (!nodePath.equalsIgnoreCase("relay")) {
      throw new IllegalArgumentException("--node-path " + nodePath + ": --layers runs the node relay only (the path that also runs across machines)");
    }
    String[] ab = layers.split(":");
    int from;
    int to;
    try {
      from = Integer.parseInt(ab[0].trim());
      to = Integer.parseInt(ab[ab.length - 1].trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--layers " + layers + ": want A:B (first layer, end layer)");
    }
    RoutingTrace rt = traceRouting().trace();
    if (ab.length != 2 || from < 0 || to <= from || to > rt.layers()) {
      throw new IllegalArgumentException("--layers " + layers + ": want A:B with 0 <= A < B <= " + rt.layers() + " (the trace's layers)");
    }
    if (nodes < 1 || r % nodes != 0) throw new IllegalArgumentException("--nodes must divide --ranks (" + r + "), got " + nodes);
    int e = rt.experts();
    int t = tokens != null ? tokens : rt.tokens() / r;
    if (t < 1 || (long) t * r > rt.tokens()) {
      throw new IllegalArgumentException("--tokens " + t + " x " + r + " ranks is more than the trace's " + rt.tokens() + " tokens");
    }
    int h = hidden != null ? hidden : 2048;
    if (h < 1) throw new IllegalArgumentException("--hidden must be at least 1, got " + h);
    int[][] phy2log = null;
    if (placement != null) {
      io.moeyard.placement.model.Placement plan;
      try {
        plan = io.moeyard.placement.format.PlacementReader.read(placement, r, e);
      } catch (IOException | RuntimeException ex) {
        throw unreadable("--placement", placement, ex);
      }
      if (plan.layers() != rt.layers() || plan.experts() != e) {
        throw new IllegalArgumentException("--placement " + placement + " is " + plan.layers() + " layers x " + plan.experts()
            + " experts, the trace " + rt.layers() + " x " + e);
      }
      phy2log = plan.phy2log();
      if (phy2log[0].length % r != 0) {
        throw new IllegalArgumentException("--placement " + placement + " has " + phy2log[0].length + " slots per layer, not divisible by "
            + r + " ranks");
      }
    } else if (e % r != 0) {
      throw new IllegalArgumentException("the trace's " + e + " experts do not divide among " + r + " ranks: give a --placement");
    }
    io.moeyard.placement.speculate.SpeculativeShuffler shuffler = null;
    if (speculate != null) {
      io.moeyard.placement.speculate.AffinityModel model;
      try {
        model = io.moeyard.placement.speculate.AffinityModel.read(speculate);
      } catch (IOException | RuntimeException ex) {
        throw unreadable("--speculate", speculate, ex);
      }
      if (model.layers() != rt.layers() || model.experts() != e) {
        throw new IllegalArgumentException("--speculate " + speculate + " models " + model.layers() + " layers x " + model.experts()
            + " experts, the trace has " + rt.layers() + " x " + e);
      }
      int[][] p2l = phy2log;
      if (p2l == null) {
        p2l = new int[rt.layers()][e];
        for (int[] row : p2l) for (int s = 0; s < e; s++) row[s] = s;
      }
      shuffler = new io.moeyard.placement.speculate.SpeculativeShuffler(model, p2l, r, nodes, objective(nodes),
          io.moeyard.placement.speculate.SpeculativeShuffler.TOLERANCE);
    } else if (speculateObjective != null) {
      throw new IllegalArgumentException("--speculate-objective " + speculateObjective + " needs --speculate");
    }
    return new LayerRun.Inputs(rt, from, to, r, nodes, t, h, phy2log, shuffler);
  }

  private io.moeyard.placement.speculate.SpeculativeShuffler.Objective objective(int nodes) {
    if (speculateObjective == null) return io.moeyard.placement.speculate.SpeculativeShuffler.Objective.defaultFor(nodes);
    try {
      return io.moeyard.placement.speculate.SpeculativeShuffler.Objective.parse(speculateObjective);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("--speculate-objective " + speculateObjective + ": want ranks or nodes");
    }
  }

  /** The option's file could not be read as it should: one message naming the option and the file once. */
  private static IllegalArgumentException unreadable(String option, Path file, Exception ex) {
    String msg = String.valueOf(ex.getMessage());
    return new IllegalArgumentException(option + " " + (msg.startsWith(file.toString()) ? msg : file + ": " + msg));
  }

  /**
   * What the rank processes of a --layers run must agree on before anything is derived: the
   * shape, and the contents of the trace, model and placement files (checksums: each machine may
   * keep them under another path).
   */
  private Map<String, String> layerAgreement(LayerRun.Inputs in) throws IOException {
    Map<String, String> m = new LinkedHashMap<>();
    m.put("command", "bench --layers");
    m.put("ranks", Integer.toString(in.ranks()));
    m.put("nodes", Integer.toString(in.nodes()));
    m.put("machines", Boolean.toString(machines > 1));
    m.put("layers", in.from() + ":" + in.to());
    m.put("tokens", Integer.toString(in.tokensPerRank()));
    m.put("hidden", Integer.toString(in.hidden()));
    m.put("iters", Integer.toString(layerIters()));
    RoutingTrace rt = in.trace();
    m.put("trace", rt.tokens() + " tokens x " + rt.layers() + " layers x top-" + rt.topk() + " of " + rt.experts() + " experts");
    m.put("trace_crc32c", checksum(trace));
    m.put("speculate_crc32c", speculate == null ? "none" : checksum(speculate));
    m.put("speculate_objective", in.shuffler() == null ? "none" : in.shuffler().objective().name().toLowerCase(Locale.ROOT));
    m.put("placement_crc32c", placement == null ? "none" : checksum(placement));
    m.put("corrupt_rank", Integer.toString(corruptRank));
    return m;
  }

  private static String checksum(Path file) throws IOException {
    java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
    // streamed: a trace may be large, and every rank process checksums it
    try (var in = new java.util.zip.CheckedInputStream(java.nio.file.Files.newInputStream(file), crc)) {
      in.transferTo(java.io.OutputStream.nullOutputStream());
    }
    return String.format(Locale.ROOT, "%08x", crc.getValue());
  }

  static void printLayers(LayerRun.Result res, PrintStream out) {
    out.printf(Locale.ROOT, "moeyard bench --layers %d:%d  %d ranks (%d node%s) x %d tokens  hidden %d bf16%n", res.fromLayer(),
        res.toLayer(), res.ranks(), res.nodes(), res.nodes() == 1 ? "" : "s", res.tokensPerRank(), res.hidden());
    out.printf(Locale.ROOT, "ranks: %s%n", res.world());
    if (res.objective() != null) {
      out.printf(Locale.ROOT, "speculation objective: %s%n", res.objective() == io.moeyard.placement.speculate.SpeculativeShuffler.Objective.NODES
          ? "nodes (rows crossing nodes, each weighing " + (int) io.moeyard.placement.speculate.SpeculativeShuffler.NODE_ROW_WEIGHT
          + " rows between ranks, plus rows between ranks)" : "ranks (rows between ranks)");
    }
    out.printf(Locale.ROOT, "%-12s %10s %10s %10s %12s %12s %12s %12s %12s %12s%n", "", "coll. ms", "disp. ms", "comb. ms",
        "dispatch", "remote", "partials", "forwards", "all remote", "cross-node");
    for (var m : new LayerRun.Mode[] {res.home(), res.speculative()}) {
      if (m == null) continue;
      out.printf(Locale.ROOT, "%-12s %10.2f %10.2f %10.2f %12d %12d %12d %12d %12d %12d%n", m.name(), m.medianMs(),
          m.dispatchMedianMs(), m.combineMedianMs(), m.dispatchRows(),
          m.dispatchRemote(), m.combineRemote(), m.forwardRemote(), m.remote(), m.remoteNode());
    }
    out.println("(rows summed over layers and ranks: dispatch = rows received, remote = of those from another rank, partials ="
        + " combine rows sent to another rank, forwards = tokens moved to their next rank; cross-node = dispatch rows, partials and forwards that"
        + " crossed nodes on the path that ran (with the node relay, one row per token and remote node each way);"
        + " coll. ms = median time of the layers' dispatch + combine; disp. ms, comb. ms = median of the dispatch spans, of the"
        + " combine spans (a shuffled combine's delivery included), each summed over layers: medians taken apart, they need not add"
        + " up to coll. ms)");
    if (res.speculative() != null) {
      out.printf(Locale.ROOT, "outputs with and without speculation: %s%n", res.identical()
          ? "identical, bit for bit (every token's final row has the same digest)" : "DIFFERENT: " + res.difference());
    }
  }

  static void writeLayersJson(LayerRun.Result res, Path file) throws IOException {
    ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    ObjectNode root = om.createObjectNode();
    ObjectNode cfg = root.putObject("config");
    cfg.put("ranks", res.ranks());
    cfg.put("nodes", res.nodes());
    cfg.put("tokens", res.tokensPerRank());
    cfg.put("hidden", res.hidden());
    cfg.put("from_layer", res.fromLayer());
    cfg.put("to_layer", res.toLayer());
    cfg.put("world", res.world());
    if (res.objective() != null) cfg.put("speculate_objective", res.objective().name().toLowerCase(Locale.ROOT));
    for (var m : new LayerRun.Mode[] {res.home(), res.speculative()}) {
      if (m == null) continue;
      ObjectNode n = root.putObject(m.name());
      n.put("collectives_median_ms", m.medianMs());
      n.put("dispatch_median_ms", m.dispatchMedianMs());
      n.put("combine_median_ms", m.combineMedianMs());
      n.put("final_rows_digest", String.format(Locale.ROOT, "%016x", m.outputDigest()));
      ObjectNode rows = n.putObject("rows");
      rows.put("dispatch", m.dispatchRows());
      rows.put("dispatch_remote", m.dispatchRemote());
      rows.put("dispatch_remote_node", m.dispatchRemoteNode());
      rows.put("combine_remote", m.combineRemote());
      rows.put("combine_remote_node", m.combineRemoteNode());
      rows.put("forward_remote", m.forwardRemote());
      rows.put("forward_remote_node", m.forwardRemoteNode());
      rows.put("remote", m.remote());
      rows.put("remote_node", m.remoteNode());
    }
    root.put("identical", res.identical());
    if (!res.identical()) root.put("difference", res.difference());
    PlacementWriter.writeAtomically(file, os -> om.writeValue(os, root));
  }

  BenchConfig config() {
    ModelPreset p = preset == null ? null : ModelPreset.byId(preset);
    int h = hidden != null ? hidden : p != null ? p.hidden : 2048;
    int e = experts != null ? experts : p != null ? p.experts : 64;
    int k = topk != null ? topk : p != null ? p.topk : 8;
    int t = tokens != null ? tokens : p != null ? 4096 : 1024;
    int r = ranks != null ? ranks : 8;
    DType dt = dtype == null ? DType.BF16 : DType.parse(dtype);
    TraceRouting routing = null;
    if (trace != null) {
      routing = traceRouting();
      e = experts != null ? experts : routing.trace().experts();
      k = topk != null ? topk : routing.trace().topk();
      t = tokens != null ? tokens : routing.tokensPerRank(r);
    } else if (layer != 0) {
      throw new IllegalArgumentException("--layer needs --trace");
    }
    int[] slots = placement == null ? null : placementLayer(r, e, routing);
    io.moeyard.comm.CommConfig.NodePath path = switch (nodePath.toLowerCase(Locale.ROOT)) {
      case "relay" -> io.moeyard.comm.CommConfig.NodePath.RELAY;
      case "direct" -> io.moeyard.comm.CommConfig.NodePath.DIRECT;
      default -> throw new IllegalArgumentException("--node-path must be relay or direct, got '" + nodePath + "'");
    };
    return new BenchConfig(r, t, h, e, k, dt, p == null ? null : p.id, iters, warmup, chunk, seed, routing, nodes, slots, path);
  }

  /** The plan's layer --layer as a slot -> expert map, or IllegalArgumentException naming what does not fit. */
  private int[] placementLayer(int ranks, int experts, TraceRouting routing) {
    io.moeyard.placement.model.Placement plan;
    try {
      plan = io.moeyard.placement.format.PlacementReader.read(placement, ranks, experts);
    } catch (IOException | RuntimeException ex) {
      throw unreadable("--placement", placement, ex);
    }
    if (plan.experts() != experts) {
      throw new IllegalArgumentException("--placement " + placement + " places " + plan.experts() + " experts, the routing has " + experts);
    }
    if (routing != null && plan.layers() != routing.trace().layers()) {
      throw new IllegalArgumentException("--placement " + placement + " has " + plan.layers() + " layers, the trace "
          + routing.trace().layers());
    }
    if (layer >= plan.layers()) {
      throw new IllegalArgumentException("--layer " + layer + " is outside the plan's " + plan.layers() + " layers");
    }
    int[] slots = plan.phy2log()[layer];
    if (slots.length % ranks != 0) {
      throw new IllegalArgumentException("--placement " + placement + " has " + slots.length + " slots per layer, not divisible by --ranks "
          + ranks);
    }
    return slots.clone();
  }

  private TraceRouting traceRouting() {
    Trace loaded;
    try {
      loaded = Traces.load(trace, experts != null ? experts : 0);
    } catch (IOException ex) {
      throw new IllegalArgumentException(trace + ": " + ex.getMessage());
    }
    if (!(loaded instanceof RoutingTrace rt)) {
      throw new IllegalArgumentException(trace + ": a load-only trace (logical_count) has no per-token routing;"
          + " --trace needs a .npy [tokens, layers, topk] trace");
    }
    return new TraceRouting(String.valueOf(trace.getFileName()), rt, layer);
  }

  static void print(BenchResult res, PrintStream out) {
    BenchConfig c = res.config();
    out.printf(Locale.ROOT, "moeyard bench  backend=%s (%s)  %d ranks x %d tokens  hidden %d %s  %d experts top-%d%s%n",
        res.backend(), res.device(), c.ranks(), c.tokens(), c.hidden(), c.dtype().cliName(), c.experts(), c.topk(),
        c.preset() == null ? "" : "  preset " + c.preset());
    if (c.trace() != null) out.printf(Locale.ROOT, "routing: %s%n", c.routingName());
    if (c.nodes() > 1) {
      out.printf(Locale.ROOT, "%d nodes x %d ranks, node path: %s%n", c.nodes(), c.ranks() / c.nodes(), nodePathName(res));
    }
    out.printf(Locale.ROOT, "bytes received per rank (one row per token-rank pair, self included): dispatch %.2f MB, combine %.2f MB%n",
        res.dispatchBytesPerRank() / 1e6, res.combineBytesPerRank() / 1e6);
    if (res.backend().equals("cuda")) {
      out.printf(Locale.ROOT, "cuda: %d virtual ranks share the GPU: times are CUDA events over all of them, GB/s are per rank"
          + " (the device moves %d x that); the copy moves all ranks' bytes%n", c.ranks(), c.ranks());
    }
    out.printf(Locale.ROOT, "medians of %d iterations, after %s%n%n", c.iters(),
        c.warmup() == 0 ? "no warm-up" : "at least " + c.warmup() + " warm-up calls" + (res.backend().equals("cpu") ? " and " + (res.device().contains("rank processes") ? c.ranks() + " s (1 s per process)" : "1 s") : ""));
    out.printf(Locale.ROOT, "%-18s %12s %9s %12s %10s%n", "", "median_us", "GB/s", "fused/unfused", "of copy");
    row(out, "dispatch fused", res.dispatchFused(), res.dispatchUnfused(), res.copyGbps());
    row(out, "dispatch unfused", res.dispatchUnfused(), null, res.copyGbps());
    row(out, "combine fused", res.combineFused(), res.combineUnfused(), res.copyGbps());
    row(out, "combine unfused", res.combineUnfused(), null, res.copyGbps());
    out.printf(Locale.ROOT, "%-18s %12.1f %9.2f %12s %10s%n", "copy (roofline)", res.copyMedianUs(), res.copyGbps(), "", "100%");
    if (res.dispatchBytesPerRank() > 0) {
      double w = res.dispatchWrittenBytesPerRank() / res.dispatchBytesPerRank();
      out.printf(Locale.ROOT, "fused dispatch writes %.2fx the counted bytes (one row per selection, %.2f MB per rank):"
          + " by bytes written it runs at %.0f%% of the copy%n", w, res.dispatchWrittenBytesPerRank() / 1e6,
          100 * w * res.dispatchFused().gbps() / res.copyGbps());
    }
    if (res.rows() != null) {
      out.printf(Locale.ROOT, "rows: received per rank max %d, mean %.1f; from other ranks %d; crossing nodes %d (%d node%s%s)%n",
          res.rows().receivedMax(), res.rows().receivedMean(), res.rows().remote(), res.rows().remoteNode(),
          c.nodes(), c.nodes() == 1 ? "" : "s", c.nodes() == 1 ? "" : ", fused dispatch, " + nodePathName(res));
    }
    BenchResult.SimpleKernels sk = res.simpleKernels();
    if (sk != null) {
      out.printf(Locale.ROOT, "untuned fused kernels (same run, same bits%s): dispatch %.1f us (tuned %.2fx faster),"
          + " combine %.1f us (tuned %.2fx faster)%n", sk.verified() ? "" : ": NOT VERIFIED",
          sk.dispatchMedianUs(), sk.dispatchMedianUs() / res.dispatchFused().medianUs(),
          sk.combineMedianUs(), sk.combineMedianUs() / res.combineFused().medianUs());
    }
    out.printf(Locale.ROOT, "%nverified: %s%n", res.verified() ? "yes (" + res.verifyNote() + ")" : "NO: " + res.verifyNote());
  }

  /** The path the fused calls took across nodes: the config's, on both backends. */
  static String nodePathName(BenchResult res) {
    if (res.config().nodes() == 1) return "one node";
    return res.config().nodePath() == io.moeyard.comm.CommConfig.NodePath.RELAY ? "relay" : "direct";
  }

  private static void row(PrintStream out, String name, BenchResult.Timing t, BenchResult.Timing base, double copy) {
    if (t == null) {
      out.printf(Locale.ROOT, "%-18s %12s%n", name, "not run (it stores into every rank; these ranks span machines)");
      return;
    }
    String ratio = base == null ? "" : String.format(Locale.ROOT, "%.2fx", base.medianUs() / t.medianUs());
    out.printf(Locale.ROOT, "%-18s %12.1f %9.2f %12s %9.0f%%%n", name, t.medianUs(), t.gbps(), ratio, 100 * t.gbps() / copy);
  }

  static void writeJson(BenchResult res, Path file) throws IOException {
    ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    ObjectNode root = om.createObjectNode();
    BenchConfig c = res.config();
    ObjectNode cfg = root.putObject("config");
    cfg.put("backend", res.backend());
    cfg.put("device", res.device());
    cfg.put("ranks", c.ranks());
    cfg.put("tokens", c.tokens());
    cfg.put("hidden", c.hidden());
    cfg.put("experts", c.experts());
    cfg.put("topk", c.topk());
    cfg.put("dtype", c.dtype().cliName());
    if (c.preset() != null) cfg.put("preset", c.preset());
    cfg.put("iters", c.iters());
    cfg.put("warmup", c.warmup());
    cfg.put("chunk", c.chunk());
    cfg.put("seed", c.seed());
    cfg.put("routing", c.routingName());
    cfg.put("nodes", c.nodes());
    cfg.put("node_path", nodePathName(res));
    cfg.put("dispatch_bytes_per_rank", res.dispatchBytesPerRank());
    cfg.put("combine_bytes_per_rank", res.combineBytesPerRank());
    cfg.put("dispatch_written_bytes_per_rank", res.dispatchWrittenBytesPerRank());
    pair(root.putObject("dispatch"), res.dispatchFused(), res.dispatchUnfused());
    pair(root.putObject("combine"), res.combineFused(), res.combineUnfused());
    if (res.rows() != null) {
      ObjectNode rows = root.putObject("rows");
      rows.put("received_max", res.rows().receivedMax());
      rows.put("received_mean", res.rows().receivedMean());
      rows.put("remote", res.rows().remote());
      rows.put("remote_node", res.rows().remoteNode());
    }
    root.put("copy_gbps", res.copyGbps());
    if (res.simpleKernels() != null) {
      ObjectNode sk = root.putObject("untuned_kernels");
      sk.put("dispatch_fused_median_us", res.simpleKernels().dispatchMedianUs());
      sk.put("combine_fused_median_us", res.simpleKernels().combineMedianUs());
      sk.put("verified", res.simpleKernels().verified());
    }
    root.put("device", res.device());
    root.put("verified", res.verified());
    if (!res.verified()) root.put("verify_error", res.verifyNote());
    PlacementWriter.writeAtomically(file, os -> om.writeValue(os, root));
  }

  private static void pair(ObjectNode node, BenchResult.Timing fused, BenchResult.Timing unfused) {
    ObjectNode f = node.putObject("fused");
    f.put("median_us", fused.medianUs());
    f.put("gbps", fused.gbps());
    if (unfused == null) {
      node.putNull("unfused"); // not run: the ranks span machines
      return;
    }
    ObjectNode u = node.putObject("unfused");
    u.put("median_us", unfused.medianUs());
    u.put("gbps", unfused.gbps());
    node.put("fused_over_unfused", unfused.medianUs() / fused.medianUs());
  }
}
