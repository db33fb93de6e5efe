package io.moeyard.bench.jmh;

import io.moeyard.combine.Combiner;
import io.moeyard.combine.FusedCombiner;
import io.moeyard.combine.UnfusedCombiner;
import io.moeyard.dispatch.DispatchHandle;
import io.moeyard.dispatch.DispatchOptions;
import io.moeyard.dispatch.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Combine on one rank that holds every expert, one thread: what the sums cost, with the host
 * helper's BF16 kernel and with the Java loops (the {@code JavaSums} methods fork a JVM with
 * {@code -Dmoeyard.rowsum.disable=true}). Each of the {@code tokens} tokens sends its {@code topk}
 * rows; fused, they become one weighted partial on the expert side and home adds that one
 * partial; unfused, the rows are sorted back, copied home and summed there in two levels. The
 * same bits come out of all four. No peer is involved, so this isolates arithmetic and local
 * copies from the all-to-all ({@code moeyard bench} measures that). Score: time per combine;
 * {@code tokens x topk x hidden x 2} bytes of expert output are read.
 * Run: {@code ./moeyard jmh CombineBenchmark}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CombineBenchmark {
  @Param({"1024"})
  int tokens;

  @Param({"2048"})
  int hidden;

  /** 2: sums of few rows, as a rank sees them when experts spread over 8 ranks (1-2 rows per pair); 8: long sums. */
  @Param({"2", "8"})
  int topk;

  @Param({"64"})
  int experts;

  CpuWorld world;
  Arena arena;
  DispatchHandle handle;
  RowBuffer expertOut;
  RowBuffer out;
  Combiner fused;
  Combiner unfused;

  @Setup(Level.Trial)
  public void setup() {
    Topology topo = Topology.singleNode(1);
    world = CpuWorld.create(topo);
    Transport t = world.transport(0);
    arena = Arena.ofShared();
    SplittableRandom rnd = new SplittableRandom(11);
    RowBuffer x = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
    for (int r = 0; r < tokens; r++) for (int c = 0; c < hidden; c++) x.setFloat(r, c, (float) rnd.nextDouble(-2, 2));
    int[] idx = new int[tokens * topk];
    float[] w = new float[tokens * topk];
    for (int r = 0; r < tokens; r++) {
      int first = rnd.nextInt(experts);
      for (int k = 0; k < topk; k++) {
        idx[r * topk + k] = (first + k * (experts / topk)) % experts; // distinct experts
        w[r * topk + k] = 1f / topk;
      }
    }
    handle = new FusedDispatcher(t, ExpertMap.trivial(topo, experts), new DispatchOptions(DispatchOptions.DEFAULT_CHUNK_PAIRS)).dispatch(x, new Routing(tokens, topk, idx, w));
    expertOut = RowBuffer.allocate(arena, handle.receivedRows(), hidden, DType.BF16);
    for (int r = 0; r < expertOut.rows(); r++) for (int c = 0; c < hidden; c++) expertOut.setFloat(r, c, (float) rnd.nextDouble(-2, 2));
    out = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
    fused = new FusedCombiner(t);
    unfused = new UnfusedCombiner(t);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    handle.close();
    world.close();
    arena.close();
  }

  @Benchmark
  public RowBuffer fusedNativeSums() {
    fused.combine(handle, expertOut, out);
    return out;
  }

  @Benchmark
  @Fork(value = 1, jvmArgsAppend = "-Dmoeyard.rowsum.disable=true")
  public RowBuffer fusedJavaSums() {
    fused.combine(handle, expertOut, out);
    return out;
  }

  @Benchmark
  public RowBuffer unfusedNativeSums() {
    unfused.combine(handle, expertOut, out);
    return out;
  }

  @Benchmark
  @Fork(value = 1, jvmArgsAppend = "-Dmoeyard.rowsum.disable=true")
  public RowBuffer unfusedJavaSums() {
    unfused.combine(handle, expertOut, out);
    return out;
  }
}
