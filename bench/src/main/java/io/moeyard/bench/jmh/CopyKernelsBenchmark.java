package io.moeyard.bench.jmh;

import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
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
 * The copy patterns the CPU backend is made of, on the same bytes, one thread:
 * <ul>
 *   <li>{@code bulk}: one {@code MemorySegment.copy} of all rows, the roofline;
 *   <li>{@code rowsInOrder}: the same rows one copy each, in order (the unfused all-to-all's blocks);
 *   <li>{@code scatterExpertMajor}: each source row stored into the positions a fused dispatch
 *       gives it (top-k slots, rows of one slot contiguous): the fused dispatch's inner loop;
 *   <li>{@code gatherInSlotOrder}: the same stores in destination order (sources re-read);
 *   <li>{@code permuteThenSort}: the unfused path's two extra passes for the same rows.
 * </ul>
 * Score is time per operation; divide {@code bytes} (rows x hidden x 2) by it for GB/s.
 * Run: {@code ./moeyard jmh CopyKernelsBenchmark}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CopyKernelsBenchmark {
  @Param({"1024"})
  int tokens;

  @Param({"2048"})
  int hidden;

  @Param({"8"})
  int topk;

  @Param({"64"})
  int slots;

  Arena arena;
  RowBuffer x;
  RowBuffer dst;
  RowBuffer tmp;
  int[] scatterPos;
  int[] permPos;
  /** Selections in destination order (slot, then token): the source token of each destination row. */
  int[] slotOrderToken;

  @Setup(Level.Trial)
  public void setup() {
    arena = Arena.ofShared();
    int rows = tokens * topk;
    x = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
    dst = RowBuffer.allocate(arena, rows, hidden, DType.BF16);
    tmp = RowBuffer.allocate(arena, rows, hidden, DType.BF16);
    x.segment().fill((byte) 3);
    // the fused dispatch's destinations: slot-major, token order inside a slot
    SplittableRandom rnd = new SplittableRandom(7);
    int[] slotOf = new int[rows];
    int[] count = new int[slots];
    for (int t = 0; t < tokens; t++) {
      for (int k = 0; k < topk; k++) {
        int s = (rnd.nextInt(slots / topk) * topk + k) % slots; // distinct slots per token
        slotOf[t * topk + k] = s;
        count[s]++;
      }
    }
    int[] next = new int[slots];
    for (int s = 1; s < slots; s++) next[s] = next[s - 1] + count[s - 1];
    scatterPos = new int[rows];
    for (int i = 0; i < rows; i++) scatterPos[i] = next[slotOf[i]]++;
    permPos = scatterPos.clone();
    slotOrderToken = new int[rows];
    for (int i = 0; i < rows; i++) slotOrderToken[scatterPos[i]] = i / topk;
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    arena.close();
  }

  @Benchmark
  public void bulk() {
    MemorySegment.copy(tmp.segment(), 0, dst.segment(), 0, dst.byteSize());
  }

  @Benchmark
  public void rowsInOrder() {
    long rb = dst.rowBytes();
    for (int i = 0; i < dst.rows(); i++) MemorySegment.copy(tmp.segment(), i * rb, dst.segment(), i * rb, rb);
  }

  @Benchmark
  public void scatterExpertMajor() {
    long rb = x.rowBytes();
    for (int i = 0; i < scatterPos.length; i++) {
      MemorySegment.copy(x.segment(), (i / topk) * rb, dst.segment(), scatterPos[i] * rb, rb);
    }
  }

  /** The same stores as {@link #scatterExpertMajor}, issued in destination order: sequential writes, re-read sources. */
  @Benchmark
  public void gatherInSlotOrder() {
    long rb = x.rowBytes();
    for (int i = 0; i < slotOrderToken.length; i++) {
      MemorySegment.copy(x.segment(), slotOrderToken[i] * rb, dst.segment(), i * rb, rb);
    }
  }

  @Benchmark
  public void permuteThenSort() {
    long rb = x.rowBytes();
    for (int i = 0; i < permPos.length; i++) {
      MemorySegment.copy(x.segment(), (i / topk) * rb, tmp.segment(), permPos[i] * rb, rb);
    }
    MemorySegment.copy(tmp.segment(), 0, dst.segment(), 0, dst.byteSize());
  }
}
