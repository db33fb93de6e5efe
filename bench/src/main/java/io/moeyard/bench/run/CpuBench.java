package io.moeyard.bench.run;

import io.moeyard.combine.internal.Combiner;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.Transport;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;

/**
 * The all-to-all benchmark on the embedded CPU backend: R ranks as threads of this JVM, random
 * routing, fused and unfused dispatch and combine timed side by side in one run, each verified
 * against the other and against the test kit's {@link NaiveReference}, and the roofline: every rank thread
 * copying the same number of bytes with one bulk copy, in the same run.
 *
 * <p>Timing: every operation is warmed up first; then {@code iters} rounds each time one call of
 * every operation, interleaved, so that drifting machine speed affects all alike. Every call
 * starts at a world barrier; one sample runs from the first rank's start to the last rank's end
 * (see {@link #wallSpan}); the median over {@code iters} samples is reported. Receive buffers are
 * allocated once and passed in (the reuse path an engine takes), so allocation is not timed.
 */
public final class CpuBench {
  private CpuBench() {}

  public static BenchResult run(BenchConfig c, PrintStream progress) {
    int ranks = c.ranks();
    Tally tally = new Tally(c);
    try (CpuWorld world = CpuWorld.create(c.expertMap().topology()); Arena arena = Arena.ofShared()) {
      Data data = prepare(c, arena, progress);
      world.run(t -> {
        rankBody(t, c, data, tally, progress);
        return null;
      });
    }
    return tally.result(c);
  }

  /**
   * Every rank's inputs and the reference, deterministic from the config's seed: ranks that are
   * processes each build all of it (the reference checks a rank's rows against every sender's).
   */
  record Data(ExpertMap map, DType outType, int[][] idx, float[][] w, NaiveReference ref, RowBuffer[] x, RowBuffer[] y) {
    Routing routing(BenchConfig c, int r) {
      return new Routing(c.tokens(), c.topk(), idx[r], w[r]);
    }
  }

  static Data prepare(BenchConfig c, Arena arena, PrintStream progress) {
    int ranks = c.ranks();
    ExpertMap map = c.expertMap();
    DType outType = c.dtype() == DType.FP8_E4M3 ? DType.BF16 : c.dtype();
    int[] tokens = tokens(c);
    int[][] idx = routing(c);
    float[][] w = weights(c);
    progress.printf("moeyard bench: %d ranks x %d tokens, hidden %d %s, %d experts top-%d, %s routing; preparing data...%n",
        ranks, c.tokens(), c.hidden(), c.dtype().cliName(), c.experts(), c.topk(), c.routingName());
    NaiveReference ref = new NaiveReference(map, idx, tokens, c.topk());
    RowBuffer[] x = new RowBuffer[ranks];
    RowBuffer[] y = new RowBuffer[ranks];
    for (int r = 0; r < ranks; r++) {
      x[r] = RowBuffer.allocate(arena, c.tokens(), c.hidden(), c.dtype());
      y[r] = RowBuffer.allocate(arena, ref.rowsReceivedBy(r), c.hidden(), outType);
    }
    java.util.stream.IntStream.range(0, ranks).parallel().forEach(r -> {
      Workload.fill(x[r], xRandom(c, r));
      Workload.fill(y[r], yRandom(c, r));
    });
    return new Data(map, outType, idx, w, ref, x, y);
  }

  /** What the ranks measured: rank 0's samples (spans over all ranks), every rank's bytes, rows and verdict. */
  static final class Tally {
    final long[][] samples;
    final double[] dispatchBytes;
    final double[] combineBytes;
    final double[] writtenBytes;
    final long[][] rowCounts;
    final String[] problems;
    /**
     * Least warm-up time per operation: {@link #WARMUP_NANOS} in one JVM; rank processes each
     * compile the same code on the shared cores, so {@link ProcBench} gives them that per process.
     */
    long minWarmupNanos = WARMUP_NANOS;
    /** False where the unfused baseline did not run (ranks on several machines): its timings are null. */
    boolean unfused = true;

    Tally(BenchConfig c) {
      int ranks = c.ranks();
      samples = new long[5][c.iters()];
      dispatchBytes = new double[ranks];
      combineBytes = new double[ranks];
      writtenBytes = new double[ranks];
      rowCounts = new long[3][ranks];
      problems = new String[ranks];
    }

    BenchResult result(BenchConfig c) {
      String note = null;
      for (String p : problems) if (p != null && note == null) note = p;
      double db = mean(dispatchBytes);
      double cb = mean(combineBytes);
      double copyUs = median(samples[4]) / 1e3;
      return new BenchResult(c, "cpu", cpuName(), db, cb, mean(writtenBytes),
          timing(samples[0], db), unfused ? timing(samples[1], db) : null, timing(samples[2], cb),
          unfused ? timing(samples[3], cb) : null, copyUs, db / (copyUs * 1e3), note == null,
          note != null ? note : unfused ? "fused == unfused == reference, bit for bit"
              : "fused == reference, bit for bit (the unfused baseline does not run across machines)", null,
          BenchResult.Rows.of(rowCounts[0], rowCounts[1], rowCounts[2]));
    }
  }

  /** One rank's share of the bench: verify, warm up, time; what it measured goes into {@code tally} at its rank. */
  static void rankBody(Transport t, BenchConfig c, Data data, Tally tally, PrintStream progress) {
    int r = t.rank();
    ExpertMap map = data.map();
    RowBuffer x = data.x()[r];
    RowBuffer[] y = data.y();
    RowBuffer[] allX = data.x();
    DType outType = data.outType();
    NaiveReference ref = data.ref();
    Routing routing = data.routing(c, r);
    long[][] samples = tally.samples;
    double[] dispatchBytes = tally.dispatchBytes;
    double[] combineBytes = tally.combineBytes;
    double[] writtenBytes = tally.writtenBytes;
    long[][] rowCounts = tally.rowCounts;
    String[] problems = tally.problems;
    boolean lead = r == 0;
    // sized for this run: the exact rows this rank receives, not the worst case (the deepseek-v3
    // preset would need 8x the memory)
    CommConfig cfg = CommConfig.of(c.tokens(), c.hidden(), c.topk(), c.dtype(), outType)
        .withChunkPairs(c.chunk()).withReceiveRows(Math.max(1, ref.rowsReceivedBy(r))).withNodePath(c.nodePath());
    // between machines the unfused baseline cannot run: it stores into every rank's memory
    boolean baseline = !Machines.spanned(t);
    tally.unfused = baseline;
    try (Arena arena = Arena.ofShared();
        Communicator fused = Communicator.cpu(t, map, cfg);
        Communicator unfused = baseline ? Communicator.cpu(t, map, cfg.withVariant(CommConfig.Variant.UNFUSED)) : null) {
      Dispatched[] hf = {fused.dispatch(x, routing)};
      Dispatched[] hu = {baseline ? unfused.dispatch(x, routing) : null};
      // --- verification, once, before timing
      String p = ref.checkDispatch(r, hf[0].received(), hf[0].receivedRows(), allX);
      if (p == null && baseline) p = sameRows(hf[0], hu[0]);
      RowBuffer outF = RowBuffer.allocate(arena, c.tokens(), c.hidden(), outType);
      RowBuffer outU = RowBuffer.allocate(arena, c.tokens(), c.hidden(), outType);
      fused.combine(hf[0], y[r], outF);
      if (baseline) unfused.combine(hu[0], y[r], outU);
      if (p == null) p = ref.checkCombine(r, routing.topkWeights(), y, outF);
      if (p == null && baseline && outF.segment().mismatch(outU.segment()) != -1) p = "rank " + r + ": fused and unfused combine differ";
      problems[r] = p;
      int pairs = hf[0].receivedPairs();
      dispatchBytes[r] = (double) pairs * (x.rowBytes() + (long) x.scalesPerRow() * Float.BYTES);
      combineBytes[r] = (double) pairs * outF.rowBytes();
      writtenBytes[r] = (double) hf[0].receivedRows() * (x.rowBytes() + (long) x.scalesPerRow() * Float.BYTES);
      countRows(hf[0], r, rowCounts);

      if (lead) progress.printf("verified: %s; timing %d + %d warm-up iterations of each...%n",
          p == null ? "yes" : "NO (" + p + ")", c.iters(), c.warmup());
      // Each combine uses its communicator's latest dispatch (every round dispatches first); the
      // roofline copies between the two communicators' receive buffers, from the same allocator
      // as every collective buffer.
      RowBuffer recv = hf[0].received();
      // without the baseline, the copy reads a buffer of the same allocator of its own
      RowBuffer src = baseline ? hu[0].received() : RowBuffer.allocate(arena, Math.max(1, pairs), x.hidden(), x.dtype());
      long rowPart = (long) pairs * x.rowBytes();
      long scalePart = (long) pairs * x.scalesPerRow() * Float.BYTES;
      IntConsumer[] ops = {
        i -> hf[0] = fused.dispatch(x, routing),
        baseline ? i -> hu[0] = unfused.dispatch(x, routing) : null,
        i -> fused.combine(hf[0], y[r], outF),
        baseline ? i -> unfused.combine(hu[0], y[r], outU) : null,
        i -> {
          RowCopy.copy(src.segment(), src.rowOffset(0), recv.segment(), recv.rowOffset(0), rowPart);
          if (scalePart > 0) RowCopy.copy(src.scales(), 0, recv.scales(), 0, scalePart);
        }
      };
      for (IntConsumer op : ops) if (op != null) warmUp(t, c, op, tally.minWarmupNanos);
      // interleaved, one sample of each per round: this VM's memory bandwidth drifts by up to 2x
      // over seconds, and timing all of one operation before the next would let that drift into
      // the ratios
      for (int i = 0; i < c.iters(); i++) {
        for (int k = 0; k < ops.length; k++) {
          if (ops[k] == null) continue;
          long ns = sample(t, ops[k], i);
          if (lead) samples[k][i] = ns;
        }
      }
    }
  }

  /**
   * rowCounts[0..2][r]: rows rank r received, those from other ranks, and the rows r sent across
   * a node boundary on the node path that ran (relay: one per token and remote node; direct: one
   * per token-rank pair with a rank on another node).
   */
  static void countRows(Dispatched d, int r, long[][] rowCounts) {
    countRows(d.receivedRows(), d::rowSourceRank, d.rowsSentAcrossNodes(), r, rowCounts);
  }

  /** The same for {@code n} received rows whose source ranks {@code sourceOf} gives (any handle type). */
  static void countRows(int n, java.util.function.IntUnaryOperator sourceOf, int crossedNodes, int r, long[][] rowCounts) {
    long remote = 0;
    for (int i = 0; i < n; i++) if (sourceOf.applyAsInt(i) != r) remote++;
    rowCounts[0][r] = n;
    rowCounts[1][r] = remote;
    rowCounts[2][r] = crossedNodes;
  }


  /**
   * Calls {@code op} between world barriers, untimed, until both {@code warmup} calls and
   * {@link #WARMUP_NANOS} have passed (the JIT needs time, not just calls, before a collective
   * runs at its steady speed: a handful of calls leaves the fused dispatch several times slower
   * than its steady state);
   * rank 0 decides, for all, when warm-up ends.
   */
  private static void warmUp(Transport t, BenchConfig c, IntConsumer op, long minNanos) {
    long start = System.nanoTime();
    int done = 0;
    boolean warm = c.warmup() == 0;
    while (!warm) {
      boolean mine = ++done > c.warmup() && System.nanoTime() - start > (c.warmup() == 0 ? 0 : minNanos);
      warm = (Boolean) t.allGather(mine)[0];
      if (!warm) {
        op.accept(-done);
        t.barrier();
      }
    }
  }

  /**
   * One timed call of {@code op} on every rank, started at a world barrier: its {@link #span}.
   */
  private static long sample(Transport t, IntConsumer op, int i) {
    t.barrier();
    long start = System.nanoTime();
    op.accept(i);
    return span(t, start, System.nanoTime());
  }

  /**
   * A collective: every rank gives when its part of one call started and ended (after a world
   * barrier, on its own monotonic clock), and every rank gets the call's time: the {@link #wallSpan}
   * of each machine's ranks, which share a clock; the longest machine's.
   */
  static long span(Transport t, long start, long end) {
    Object[] all = t.allGather(new long[] {start, end});
    if (!Machines.spanned(t)) return wallSpan(all);
    java.util.Map<Integer, java.util.List<Object>> byMachine = new java.util.HashMap<>();
    for (int q = 0; q < all.length; q++) byMachine.computeIfAbsent(t.machineOf(q), m -> new java.util.ArrayList<>()).add(all[q]);
    long longest = 0;
    for (java.util.List<Object> spans : byMachine.values()) longest = Math.max(longest, wallSpan(spans.toArray()));
    return longest;
  }

  /**
   * From the first rank's start to the last rank's end. With more rank threads than cores, a
   * rank can be descheduled right after leaving the start barrier while the others already run
   * (or after the end barrier), so one rank's own clock would under- or over-count; the span
   * over all ranks is the collective's wall time either way.
   */
  static long wallSpan(Object[] spans) {
    long first = Long.MAX_VALUE;
    long last = Long.MIN_VALUE;
    for (Object o : spans) {
      long[] s = (long[]) o;
      first = Math.min(first, s[0]);
      last = Math.max(last, s[1]);
    }
    return last - first;
  }

  /** Minimum warm-up per measurement, unless --warmup 0. */
  static final long WARMUP_NANOS = 1_000_000_000L;


  private static String sameRows(Dispatched a, Dispatched b) {
    if (a.receivedRows() != b.receivedRows()) return "fused and unfused dispatch received different row counts";
    RowBuffer ra = a.received();
    RowBuffer rb = b.received();
    long n = a.receivedRows() * ra.rowBytes();
    if (MemorySegment.mismatch(ra.segment(), ra.offset(), ra.offset() + n, rb.segment(), rb.offset(), rb.offset() + n) != -1) {
      return "fused and unfused dispatch received different bytes";
    }
    for (int i = 0; i < a.receivedRows(); i++) {
      if (Float.floatToRawIntBits(a.receivedWeight(i)) != Float.floatToRawIntBits(b.receivedWeight(i))) {
        return "fused and unfused dispatch received different weights (row " + i + ")";
      }
    }
    return null;
  }


  // The bench's data, seeded per rank: every backend's bench uses these, so `--seed S` means the
  // same routing, tokens and expert outputs on cpu and cuda.

  /** Source of rank r's routing ({@link Workload#randomRouting}). */
  static SplittableRandom routingRandom(BenchConfig c, int r) {
    return new SplittableRandom(c.seed() * 1_000_003L + r);
  }

  /** Source of rank r's top-k weights ({@link #randomWeights}). */
  static SplittableRandom weightRandom(BenchConfig c, int r) {
    return new SplittableRandom(c.seed() * 1_000_033L + 7 * r + 1);
  }

  /** Source of rank r's token rows ({@link Workload#fill}). */
  static SplittableRandom xRandom(BenchConfig c, int r) {
    return new SplittableRandom(c.seed() + 17 * r);
  }

  /** Source of rank r's expert outputs ({@link Workload#fill}). */
  static SplittableRandom yRandom(BenchConfig c, int r) {
    return new SplittableRandom(c.seed() + 31 * r);
  }

  static float[] randomWeights(SplittableRandom rnd, int tokens, int topk) {
    float[] w = new float[tokens * topk];
    for (int t = 0; t < tokens; t++) {
      double sum = 0;
      for (int k = 0; k < topk; k++) sum += (w[t * topk + k] = (float) rnd.nextDouble(0.05, 1));
      for (int k = 0; k < topk; k++) w[t * topk + k] /= (float) sum;
    }
    return w;
  }

  /**
   * The bench's problem as a {@link Workload} (for the backends that take heap rows): the config's
   * map, routing and weights, equal tokens per rank, and the same rows as {@link #run} fills.
   */
  static Workload workload(BenchConfig c) {
    return new Workload(c.expertMap(), tokens(c), c.topk(), c.hidden(), c.dtype(), routing(c), weights(c),
        r -> xRandom(c, r), r -> yRandom(c, r));
  }

  private static int[] tokens(BenchConfig c) {
    int[] tokens = new int[c.ranks()];
    Arrays.fill(tokens, c.tokens());
    return tokens;
  }

  private static int[][] routing(BenchConfig c) {
    int[][] idx = new int[c.ranks()][];
    for (int r = 0; r < idx.length; r++) idx[r] = c.routing(r);
    return idx;
  }

  private static float[][] weights(BenchConfig c) {
    float[][] w = new float[c.ranks()][];
    for (int r = 0; r < w.length; r++) w[r] = c.weights(r);
    return w;
  }

  private static BenchResult.Timing timing(long[] ns, double bytes) {
    double us = median(ns) / 1e3;
    return new BenchResult.Timing(us, bytes / (us * 1e3));
  }

  static double median(long[] v) {
    long[] s = v.clone();
    Arrays.sort(s);
    int n = s.length;
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
  }

  private static double mean(double[] v) {
    double s = 0;
    for (double d : v) s += d;
    return v.length == 0 ? 0 : s / v.length;
  }

  private static String cpuName() {
    return Runtime.getRuntime().availableProcessors() + " CPU cores, Java " + Runtime.version().feature()
        + ", combine sums: " + Combiner.bf16Arithmetic();
  }
}
