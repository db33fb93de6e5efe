package io.moeyard.bench.run;

import io.moeyard.engine.DType;
import io.moeyard.placement.trace.NpyWriter;
import io.moeyard.testkit.Workload;
import java.io.IOException;
import java.nio.file.Path;

/**
 * One all-to-all benchmark configuration (tokens are per rank).
 *
 * @param chunk pipelining chunk in token-rank pairs (dispatch, fused combine) or rows (unfused a2a)
 * @param trace routing from a measured trace, or null for uniform random experts
 * @param nodes nodes the ranks are spread over (ranks / nodes per node): the replica rule prefers
 *     a replica on the token's node, and rows that cross nodes are counted apart
 * @param physicalToLogical the expert of each physical slot (a placement's layer), or null for the
 *     trivial map (slot p holds expert p)
 * @param nodePath how the fused path crosses nodes (relay, the default, or direct; the same path on one node)
 */
public record BenchConfig(
    int ranks, int tokens, int hidden, int experts, int topk, DType dtype, String preset,
    int iters, int warmup, int chunk, long seed, TraceRouting trace, int nodes, int[] physicalToLogical,
    io.moeyard.comm.CommConfig.NodePath nodePath) {

  public BenchConfig {
    java.util.Objects.requireNonNull(nodePath, "nodePath");
  }

  /** The node relay's path. */
  public BenchConfig(
      int ranks, int tokens, int hidden, int experts, int topk, DType dtype, String preset,
      int iters, int warmup, int chunk, long seed, TraceRouting trace, int nodes, int[] physicalToLogical) {
    this(ranks, tokens, hidden, experts, topk, dtype, preset, iters, warmup, chunk, seed, trace, nodes, physicalToLogical,
        io.moeyard.comm.CommConfig.NodePath.RELAY);
  }

  /** One node, the trivial map. */
  public BenchConfig(
      int ranks, int tokens, int hidden, int experts, int topk, DType dtype, String preset,
      int iters, int warmup, int chunk, long seed, TraceRouting trace) {
    this(ranks, tokens, hidden, experts, topk, dtype, preset, iters, warmup, chunk, seed, trace, 1, null);
  }

  /** The expert map the bench dispatches with: its topology ({@code nodes}) and slots. */
  public io.moeyard.engine.ExpertMap expertMap() {
    io.moeyard.engine.Topology topo = new io.moeyard.engine.Topology(nodes, ranks / nodes);
    return physicalToLogical == null
        ? io.moeyard.engine.ExpertMap.trivial(topo, experts)
        : io.moeyard.engine.ExpertMap.of(topo, experts, physicalToLogical);
  }

  /** Uniform random routing. */
  public BenchConfig(
      int ranks, int tokens, int hidden, int experts, int topk, DType dtype, String preset,
      int iters, int warmup, int chunk, long seed) {
    this(ranks, tokens, hidden, experts, topk, dtype, preset, iters, warmup, chunk, seed, null);
  }

  /** This configuration with {@code tokens} tokens per rank. */
  public BenchConfig withTokens(int tokens) {
    return new BenchConfig(ranks, tokens, hidden, experts, topk, dtype, preset, iters, warmup, chunk, seed, trace, nodes,
        physicalToLogical, nodePath);
  }

  /**
   * Rank r's expert ids ({@code [tokens * topk]}): from the trace when there is one, else
   * distinct uniformly random experts from {@link CpuBench#routingRandom}.
   */
  int[] routing(int r) {
    if (trace != null) return trace.rankRouting(r, tokens);
    return Workload.randomRouting(CpuBench.routingRandom(this, r), tokens, experts, topk, 0);
  }

  /** Rank r's top-k weights, from their own stream (random either way: traces hold ids only). */
  float[] weights(int r) {
    return CpuBench.randomWeights(CpuBench.weightRandom(this, r), tokens, topk);
  }

  /**
   * Writes every rank's expert ids as one {@code [ranks, tokens, topk]} .npy (int16 or int32, -1 =
   * none), the input {@code bench/gpu/torch_baseline.py --routing} reads so that the PyTorch
   * baseline routes exactly as this bench does.
   */
  public void writeRouting(Path file) throws IOException {
    int[] all = new int[Math.multiplyExact(Math.multiplyExact(ranks, tokens), topk)];
    for (int r = 0; r < ranks; r++) System.arraycopy(routing(r), 0, all, r * tokens * topk, tokens * topk);
    io.moeyard.placement.format.PlacementWriter.writeAtomically(file, os -> NpyWriter.write(os, new int[] {ranks, tokens, topk}, all));
  }

  /** {@code uniform} or {@code trace NAME, layer L}. */
  public String routingName() {
    return trace == null ? "uniform random" : trace.describe();
  }

  /** Null when the configuration is runnable, else the first problem, naming the value. */
  public String problem() {
    if (ranks < 1) return "--ranks must be >= 1, got " + ranks;
    if (tokens < 0) return "--tokens must be >= 0, got " + tokens;
    if (hidden < 1) return "--hidden must be >= 1, got " + hidden;
    if (experts < 1) return "--experts must be >= 1, got " + experts;
    if (nodes < 1 || ranks % nodes != 0) return "--nodes must divide --ranks (" + ranks + "), got " + nodes;
    if (physicalToLogical == null && experts % ranks != 0) {
      return "--experts (" + experts + ") must be divisible by --ranks (" + ranks + ")";
    }
    if (physicalToLogical != null && physicalToLogical.length % ranks != 0) {
      return "the placement's " + physicalToLogical.length + " slots are not divisible by --ranks (" + ranks + ")";
    }
    if (topk < 1 || topk > experts) return "--topk must be in [1, experts = " + experts + "], got " + topk;
    if (dtype == DType.FP8_E4M3 && hidden % DType.FP8_SCALE_BLOCK != 0) {
      return "--dtype fp8 needs --hidden divisible by 128, got " + hidden;
    }
    if (iters < 1) return "--iters must be >= 1, got " + iters;
    if (warmup < 0) return "--warmup must be >= 0, got " + warmup;
    if (chunk < 1) return "--chunk must be >= 1, got " + chunk;
    return trace == null ? null : trace.problem(this);
  }
}
