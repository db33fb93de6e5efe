package io.moeyard.bench.cli;

import io.moeyard.bench.example.MoeLayerExample;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.rendezvous.RendezvousException;
import io.moeyard.engine.shm.ClusterTransport;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moeyard layer-example}: the integration example ({@link MoeLayerExample}) as a command.
 * Alone it runs the layer's ranks as threads; under {@code moeyard launch} (or torchrun: RANK and
 * the other variables set) this process is one rank of a world of processes over a
 * {@link ClusterTransport}, on one machine or several, as an engine runs one process per GPU.
 * Every rank checks its output against the dense layer.
 */
@Command(
    name = "layer-example",
    mixinStandardHelpOptions = true,
    description = {
      "One MoE layer under expert parallelism (router, dispatch, experts on the received rows, combine), each rank checked",
      "against the same layer computed densely: the integration example, runnable. Alone: --ranks threads. Under moeyard",
      "launch (or torchrun), one rank per process over a ClusterTransport, e.g. moeyard launch --nprocs 4 --nodes 2 --",
      "layer-example. Exit 0 when every rank matched, 1 when one did not, 2 on bad options or a world that did not form."
    })
public final class LayerExampleCommand implements Callable<Integer> {
  @Option(names = "--ranks", defaultValue = "4", description = "ranks as threads when not launched; default ${DEFAULT-VALUE}")
  int ranks;

  @Option(names = "--experts", defaultValue = "16", description = "experts (a multiple of the ranks); default ${DEFAULT-VALUE}")
  int experts;

  @Option(names = "--topk", defaultValue = "2", description = "experts per token; default ${DEFAULT-VALUE}")
  int topk;

  @Option(names = "--hidden", defaultValue = "64", description = "hidden size; default ${DEFAULT-VALUE}")
  int hidden;

  @Option(names = "--tokens", defaultValue = "16", description = "tokens of rank 0 (rank r has --tokens + r %% 3); default ${DEFAULT-VALUE}")
  int tokens;

  @Option(names = "--seed", defaultValue = "42", description = "weights and tokens; default ${DEFAULT-VALUE}")
  long seed;

  @Override
  public Integer call() {
    boolean launched = System.getenv("RANK") != null;
    try {
      if (launched) return processRank();
      String bad = problem(ranks);
      if (bad != null) return bad(bad);
      MoeLayerExample layer = new MoeLayerExample(ranks, experts, topk, hidden, seed);
      float[][][] x = new float[ranks][][];
      for (int r = 0; r < ranks; r++) x[r] = tokensOf(r);
      List<float[][]> got = layer.runExpertParallel(x);
      boolean ok = true;
      for (int r = 0; r < ranks; r++) ok &= report(layer, r, ranks + " rank threads", x[r], got.get(r));
      return ok ? 0 : 1;
    } catch (RendezvousException e) {
      return bad(e.getMessage());
    }
  }

  /** This process's rank of a launched world, over a ClusterTransport. */
  private int processRank() {
    Map<String, String> agreed = Map.of("command", "layer-example", "experts", Integer.toString(experts), "topk",
        Integer.toString(topk), "hidden", Integer.toString(hidden), "tokens", Integer.toString(tokens), "seed", Long.toString(seed));
    try (ClusterTransport t = ClusterTransport.join(agreed)) {
      String bad = problem(t.size());
      if (bad != null) return bad(bad); // every rank has the same options (agreed), so every rank leaves here
      MoeLayerExample layer = new MoeLayerExample(t.size(), experts, topk, hidden, seed);
      int r = t.rank();
      float[][] xr = tokensOf(r);
      float[][] out = layer.runRank(t, xr, tokens + 2);
      String where = t.size() + " rank processes, machine " + t.machineOf(r) + " of " + t.machines() + ", node "
          + r / t.topology().localRanks() + " of " + t.topology().nodes();
      return report(layer, r, where, xr, out) ? 0 : 1;
    } catch (CollectiveException e) {
      System.err.println("moeyard layer-example: " + e.getMessage());
      return 1;
    }
  }

  private String problem(int worldRanks) {
    if (worldRanks < 1) return "--ranks must be at least 1, got " + worldRanks;
    if (experts < worldRanks || experts % worldRanks != 0) return "--experts " + experts + " is not a multiple of the " + worldRanks + " ranks";
    if (topk < 1 || topk > experts) return "--topk " + topk + " is outside [1, " + experts + "]";
    if (hidden < 1) return "--hidden must be at least 1, got " + hidden;
    if (tokens < 0) return "--tokens must be >= 0, got " + tokens;
    return null;
  }

  /** Rank r's tokens, the same in every process: drawn from the seed and the rank. */
  private float[][] tokensOf(int r) {
    SplittableRandom rnd = new SplittableRandom(seed * 1_000_003 + r);
    float[][] x = new float[tokens + r % 3][hidden];
    for (float[] row : x) for (int c = 0; c < hidden; c++) row[c] = (float) rnd.nextGaussian();
    return x;
  }

  private static boolean report(MoeLayerExample layer, int r, String where, float[][] x, float[][] got) {
    float[][] want = layer.denseReference(x);
    double worst = 0;
    boolean ok = true;
    for (int t = 0; t < want.length; t++) {
      for (int c = 0; c < want[t].length; c++) {
        float d = Math.abs(want[t][c] - got[t][c]);
        worst = Math.max(worst, d);
        ok &= d <= MoeLayerExample.tolerance(want[t][c]);
      }
    }
    System.out.printf("layer-example: rank %d (%s), %d tokens: max abs difference vs the dense layer %.4g: %s%n",
        r, where, x.length, worst, ok ? "ok (bf16 rounding)" : "FAILED");
    System.out.flush();
    return ok;
  }

  private static int bad(String message) {
    System.err.println("moeyard layer-example: " + message);
    return 2;
  }
}
