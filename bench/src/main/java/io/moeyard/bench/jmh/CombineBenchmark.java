package io.moeyard.bench.jmh;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
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
 * same bits come out of all four. Both go through the {@link Communicator}, as an engine calls
 * them. No peer is involved, so this isolates arithmetic and local
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
  Communicator fused;
  Communicator unfused;
  /** Each communicator's own dispatch of the same tokens (a dispatch result belongs to its communicator). */
  Dispatched fusedDispatch;
  Dispatched unfusedDispatch;
  RowBuffer expertOut;
  RowBuffer out;

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
    ExpertMap map = ExpertMap.trivial(topo, experts);
    CommConfig cfg = CommConfig.of(tokens, hidden, topk, DType.BF16, DType.BF16);
    fused = Communicator.cpu(t, map, cfg);
    unfused = Communicator.cpu(t, map, cfg.withVariant(CommConfig.Variant.UNFUSED));
    Routing routing = new Routing(tokens, topk, idx, w);
    fusedDispatch = fused.dispatch(x, routing);
    unfusedDispatch = unfused.dispatch(x, routing);
    expertOut = RowBuffer.allocate(arena, fusedDispatch.receivedRows(), hidden, DType.BF16);
    for (int r = 0; r < expertOut.rows(); r++) for (int c = 0; c < hidden; c++) expertOut.setFloat(r, c, (float) rnd.nextDouble(-2, 2));
    out = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    fused.close();
    unfused.close();
    world.close();
    arena.close();
  }

  @Benchmark
  public RowBuffer fusedNativeSums() {
    fused.combine(fusedDispatch, expertOut, out);
    return out;
  }

  @Benchmark
  @Fork(value = 1, jvmArgsAppend = "-Dmoeyard.rowsum.disable=true")
  public RowBuffer fusedJavaSums() {
    fused.combine(fusedDispatch, expertOut, out);
    return out;
  }

  @Benchmark
  public RowBuffer unfusedNativeSums() {
    unfused.combine(unfusedDispatch, expertOut, out);
    return out;
  }

  @Benchmark
  @Fork(value = 1, jvmArgsAppend = "-Dmoeyard.rowsum.disable=true")
  public RowBuffer unfusedJavaSums() {
    unfused.combine(unfusedDispatch, expertOut, out);
    return out;
  }
}
