package io.moeyard.bench.run;

import io.moeyard.bench.verify.NaiveReference;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.IntFunction;
import java.util.stream.IntStream;

/**
 * One dispatch/combine problem that every backend runs: the expert map, each rank's routing,
 * token rows and expert outputs. Rows are held as raw little-endian element bytes on the heap
 * (what the cuda bench uploads to the device) and seen by the CPU collectives through heap-backed
 * {@link RowBuffer}s over the same arrays, so both backends read the very same bits.
 */
final class Workload {
  final ExpertMap map;
  final int[] tokens;
  final int topk;
  final int hidden;
  final DType dtype;
  /** Dtype of the expert outputs and the combine (BF16 when the rows are FP8). */
  final DType outType;
  final int[][] idx;
  final float[][] w;
  /** {@code [rank][tokens * hidden * dtype.bytes()]}. */
  final byte[][] x;
  /** {@code [rank][tokens * hidden / 128]} for FP8, else empty arrays. */
  final float[][] xScales;
  /** {@code [rank][rowsReceivedBy(rank) * hidden * outType.bytes()]}: the expert outputs. */
  final byte[][] y;
  final NaiveReference ref;

  /**
   * Fills x and y from {@code xRandom(r)} / {@code yRandom(r)} with {@link CpuBench#fill}, ranks in
   * parallel (each rank has its own generator, so the bits do not depend on the schedule).
   */
  Workload(
      ExpertMap map, int[] tokens, int topk, int hidden, DType dtype, int[][] idx, float[][] w,
      IntFunction<SplittableRandom> xRandom, IntFunction<SplittableRandom> yRandom) {
    this.map = map;
    this.tokens = tokens.clone();
    this.topk = topk;
    this.hidden = hidden;
    this.dtype = dtype;
    this.outType = dtype == DType.FP8_E4M3 ? DType.BF16 : dtype;
    this.idx = idx;
    this.w = w;
    int ranks = map.ranks();
    this.ref = new NaiveReference(map, idx, tokens, topk);
    this.x = new byte[ranks][];
    this.xScales = new float[ranks][];
    this.y = new byte[ranks][];
    for (int r = 0; r < ranks; r++) {
      x[r] = new byte[Math.toIntExact((long) tokens[r] * hidden * dtype.bytes())];
      xScales[r] = new float[dtype.hasScales() ? tokens[r] * (hidden / DType.FP8_SCALE_BLOCK) : 0];
      y[r] = new byte[Math.toIntExact((long) ref.rowsReceivedBy(r) * hidden * outType.bytes())];
    }
    IntStream.range(0, ranks).parallel().forEach(r -> {
      CpuBench.fill(x(r), xRandom.apply(r));
      CpuBench.fill(y(r), yRandom.apply(r));
    });
  }

  /** The bench's problem: trivial map on one node, equal tokens, the config's routing, CpuBench's seeds. */
  static Workload bench(BenchConfig c) {
    int ranks = c.ranks();
    ExpertMap map = c.expertMap();
    int[] tokens = new int[ranks];
    Arrays.fill(tokens, c.tokens());
    int[][] idx = new int[ranks][];
    float[][] w = new float[ranks][];
    for (int r = 0; r < ranks; r++) {
      idx[r] = c.routing(r);
      w[r] = c.weights(r);
    }
    return new Workload(map, tokens, c.topk(), c.hidden(), c.dtype(), idx, w,
        r -> CpuBench.xRandom(c, r), r -> CpuBench.yRandom(c, r));
  }

  int ranks() {
    return map.ranks();
  }

  /** Rank r's tokens as a heap-backed row buffer over {@code x[r]} (and its scales). */
  RowBuffer x(int r) {
    MemorySegment sc = dtype.hasScales() ? MemorySegment.ofArray(xScales[r]) : null;
    return new RowBuffer(MemorySegment.ofArray(x[r]), 0, tokens[r], hidden, dtype, sc);
  }

  /** Rank d's expert outputs as a heap-backed row buffer over {@code y[d]}. */
  RowBuffer y(int d) {
    return new RowBuffer(MemorySegment.ofArray(y[d]), 0, ref.rowsReceivedBy(d), hidden, outType, null);
  }

  Routing routing(int r) {
    return new Routing(tokens[r], topk, idx[r], w[r]);
  }

  long rowBytes() {
    return (long) hidden * dtype.bytes();
  }

  long outRowBytes() {
    return (long) hidden * outType.bytes();
  }

  int scalesPerRow() {
    return dtype.hasScales() ? hidden / DType.FP8_SCALE_BLOCK : 0;
  }

  /** One line naming the shape, for messages. */
  String describe() {
    return String.format(java.util.Locale.ROOT, "ranks=%d (%d per node) slots/rank=%d experts=%d top-%d hidden=%d %s tokens=%s",
        ranks(), map.topology().localRanks(), map.slotsPerRank(), map.experts(), topk, hidden, dtype.cliName(),
        Arrays.toString(tokens));
  }
}
