package io.moeyard.bench.jmh;

import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.testkit.Workload;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The dispatch layout one rank computes before any byte moves (DeepEP's get_dispatch_layout plus
 * the per-peer descriptors): 4096 tokens, top-8, 256 experts over 8 ranks by default, the
 * standard throughput shape. {@code replicas} adds 32 redundant slots, which routes every choice
 * through the replica rule instead of the single-slot fast path.
 *
 * <p>Run: {@code ./moeyard jmh LayoutBenchmark}. Compare with the dispatch time of
 * {@code moeyard bench}: the layout is the part of a dispatch that does not scale with hidden.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class LayoutBenchmark {
  @Param({"4096"})
  int tokens;

  @Param({"8"})
  int topk;

  @Param({"256"})
  int experts;

  @Param({"8"})
  int ranks;

  @Param({"false", "true"})
  boolean replicas;

  ExpertMap map;
  Routing routing;

  @Setup
  public void setup() {
    Topology topo = Topology.singleNode(ranks);
    if (replicas) {
      int slots = experts + 4 * ranks;
      int[] p2l = new int[slots];
      for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : (p * 7) % experts;
      map = ExpertMap.of(topo, experts, p2l);
    } else {
      map = ExpertMap.trivial(topo, experts);
    }
    int[] idx = Workload.randomRouting(new SplittableRandom(1), tokens, experts, topk, 0);
    float[] w = new float[tokens * topk];
    java.util.Arrays.fill(w, 1f / topk);
    routing = new Routing(tokens, topk, idx, w);
  }

  @Benchmark
  public DispatchLayout layout() {
    return DispatchLayout.compute(0, map, routing);
  }

  @Benchmark
  public String validate() {
    return routing.problem(experts);
  }
}
