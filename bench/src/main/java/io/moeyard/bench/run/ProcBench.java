package io.moeyard.bench.run;

import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.Transport;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * {@code moeyard bench --procs N}, inside one rank process: this rank of the very bench
 * {@link CpuBench} runs with threads, over a {@link ShmTransport} (the rank's place comes from
 * the torchrun variables that {@code moeyard launch} sets), or across machines over a
 * {@code ClusterTransport}. Every process builds every rank's inputs and the reference from the
 * seed; rank 0 collects what the others measured and returns the result (the others return
 * null). Timing is the in-JVM bench's: each sample spans from the first rank's start to the last
 * rank's end, on each machine's own monotonic clock, and the longest machine's span is the
 * sample; medians over samples.
 */
public final class ProcBench {
  private ProcBench() {}

  /** What every rank must agree on before anything is allocated (the store names a difference). */
  static Map<String, String> agreed(BenchConfig c) {
    Map<String, String> m = new LinkedHashMap<>();
    m.put("command", "bench");
    m.put("ranks", Integer.toString(c.ranks()));
    m.put("nodes", Integer.toString(c.nodes()));
    m.put("node_path", c.nodePath().name());
    m.put("tokens", Integer.toString(c.tokens()));
    m.put("hidden", Integer.toString(c.hidden()));
    m.put("experts", Integer.toString(c.experts()));
    m.put("topk", Integer.toString(c.topk()));
    m.put("dtype", c.dtype().cliName());
    m.put("iters", Integer.toString(c.iters()));
    m.put("warmup", Integer.toString(c.warmup()));
    m.put("chunk", Integer.toString(c.chunk()));
    m.put("seed", Long.toString(c.seed()));
    m.put("routing", c.routingName());
    return m;
  }

  /**
   * This process's rank of the bench; with {@code machines} the world spans machines (a
   * {@link RankTransport} over them), where only the fused node-level path runs.
   */
  public static BenchResult runRank(BenchConfig c, boolean machines, PrintStream progress) {
    Map<String, String> agreed = agreed(c);
    agreed.put("machines", Boolean.toString(machines));
    try (RankTransport joined = RankTransport.join(agreed, machines); Arena arena = Arena.ofShared()) {
      Transport t = joined.transport();
      if (t.size() != c.ranks()) {
        throw new IllegalArgumentException("the world has " + t.size() + " ranks, the bench was configured for " + c.ranks());
      }
      int r = t.rank();
      PrintStream quiet = r == 0 ? progress : new PrintStream(PrintStream.nullOutputStream());
      CpuBench.Data data = CpuBench.prepare(c, arena, quiet);
      CpuBench.Tally tally = new CpuBench.Tally(c);
      tally.minWarmupNanos = CpuBench.WARMUP_NANOS * t.size();
      CpuBench.rankBody(t, c, data, tally, quiet);
      // rank 0 has the samples; it needs everybody's bytes, rows and verdict
      long[] mine = {
        Double.doubleToRawLongBits(tally.dispatchBytes[r]), Double.doubleToRawLongBits(tally.combineBytes[r]),
        Double.doubleToRawLongBits(tally.writtenBytes[r]), tally.rowCounts[0][r], tally.rowCounts[1][r], tally.rowCounts[2][r]
      };
      Object[] figures = t.allGather(mine);
      Object[] verdicts = t.allGather(tally.problems[r]);
      if (r != 0) return null;
      for (int p = 0; p < t.size(); p++) {
        long[] f = (long[]) figures[p];
        tally.dispatchBytes[p] = Double.longBitsToDouble(f[0]);
        tally.combineBytes[p] = Double.longBitsToDouble(f[1]);
        tally.writtenBytes[p] = Double.longBitsToDouble(f[2]);
        for (int k = 0; k < 3; k++) tally.rowCounts[k][p] = f[3 + k];
        tally.problems[p] = (String) verdicts[p];
      }
      BenchResult res = tally.result(c);
      return new BenchResult(c, res.backend(), world(t) + ", " + res.device(),
          res.dispatchBytesPerRank(), res.combineBytesPerRank(), res.dispatchWrittenBytesPerRank(), res.dispatchFused(),
          res.dispatchUnfused(), res.combineFused(), res.combineUnfused(), res.copyMedianUs(), res.copyGbps(), res.verified(),
          res.verifyNote(), null, res.rows());
    }
  }

  /** How {@code t}'s ranks run, as the tables say it: "4 rank processes over shared memory", or on how many machines. */
  static String world(Transport t) {
    String over = Machines.spanned(t) ? "on " + machineCount(t) + " machines (shared memory within each, messages between)"
        : "over shared memory";
    return t.size() + " rank processes " + over;
  }

  /** How many machines {@code t}'s ranks run on. */
  static int machineCount(Transport t) {
    return (int) java.util.stream.IntStream.range(0, t.size()).map(t::machineOf).distinct().count();
  }
}
