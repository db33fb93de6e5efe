package io.moeyard.bench.run;

import io.moeyard.comm.CommConfig;
import io.moeyard.cuda.CudaAvailability;
import io.moeyard.cuda.CudaBackend;
import io.moeyard.cuda.CudaWorld;
import io.moeyard.cuda.DeviceWorkload;
import io.moeyard.cuda.DeviceDispatched;
import io.moeyard.engine.DType;
import io.moeyard.testkit.Workload;
import java.io.PrintStream;
import java.util.Arrays;
import java.util.List;

/**
 * The all-to-all benchmark on the {@code cuda} backend: a {@link CudaWorld} of R virtual ranks on
 * one GPU driven through its communicators' device path (the workload in device memory as an
 * engine would hold it, one thread and one stream per rank), the same routing, tokens and expert
 * outputs as {@link CpuBench} for the same {@link BenchConfig} (its generators and seeds), fused
 * and unfused dispatch and combine timed with CUDA events ({@link CudaWorld#lastDeviceMs()}: a
 * dispatch's data phase, a whole combine) over {@code warmup + iters} calls, median reported.
 *
 * <p>Verification, once, before timing: every output of both CUDA variants (received rows,
 * weights, FP8 scales, slot counts, each row's source rank and token, combine outputs) is compared
 * bit for bit with the CPU backend's fused path run once on the same inputs (through a {@code CpuWorld}).
 *
 * <p>The fused calls are timed a second time in the same process with the untuned kernels of the
 * native library's simple.cu (verified the same way), so that what the tuning buys is a ratio from
 * one run ({@link BenchResult.SimpleKernels}).
 *
 * <p>Bytes are counted as {@link CpuBench} counts them: DeepEP's bytes received per rank (token-rank
 * pairs x row bytes, FP8 scales included for dispatch), averaged over ranks; GB/s = those bytes /
 * median time. All R ranks share the one GPU, so a call's time covers every rank's bytes: the
 * roofline is one device-to-device copy ({@link CudaWorld#copyMillis}) of the bytes all ranks
 * receive (R x the per-rank figure), expressed in the same per-rank units, so that "of copy" is
 * copy time / call time. The aggregate device bandwidth is R times the printed GB/s.
 */
public final class CudaBench {
  private CudaBench() {}

  /** Which call each row of the samples is. */
  static final int DISPATCH_FUSED = 0;
  static final int DISPATCH_UNFUSED = 1;
  static final int COMBINE_FUSED = 2;
  static final int COMBINE_UNFUSED = 3;

  /** Runs the benchmark; throws {@code CudaUnavailableException} when the backend cannot run here. */
  public static BenchResult run(BenchConfig c, PrintStream progress) {
    CudaAvailability av = CudaBackend.availability();
    av.require();
    progress.printf("moeyard bench (cuda, %s): %d ranks x %d tokens, hidden %d %s, %d experts top-%d; preparing data...%n",
        av.device(), c.ranks(), c.tokens(), c.hidden(), c.dtype().cliName(), c.experts(), c.topk());
    Workload wl = CpuBench.workload(c);
    progress.println("running the cpu fused path once for the reference...");
    // on the node path the cuda run takes, so that the rows block counts what crossed nodes there
    CpuRun cpu = CpuRun.run(wl, true, c.nodePath() == CommConfig.NodePath.RELAY, c.chunk());
    int[] pairs = cpu.pairs.clone();
    int[] rows = cpu.rows.clone();
    BenchResult.Rows rowStats = BenchResult.Rows.of(cpu.rowCounts[0], cpu.rowCounts[1], cpu.rowCounts[2]);
    double[][] ms = new double[4][c.iters()];
    double copyMs;
    String problem;
    String simpleProblem;
    double[][] simpleMs = new double[2][c.iters()];
    int shortHolds;
    try (CudaWorld world = CudaWorld.open(wl.map, CudaCheck.config(wl).withNodePath(c.nodePath()));
        DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
      long allBytes = 0;
      for (int p : pairs) allBytes += (long) p * dispatchRowBytes(wl);
      copyMs = world.copyMillis(allBytes, c.iters());
      int[] candidates = combineCandidates();
      String[] candidateProblems = new String[candidates.length];
      try {
        problem = CudaCheck.verify(world, eng, wl, cpu, CommConfig.Variant.FUSED, CommConfig.Variant.UNFUSED);
        world.useKernels(CudaWorld.KERNELS_SIMPLE);
        simpleProblem = relays(c) ? null : CudaCheck.verify(world, eng, wl, cpu, CommConfig.Variant.FUSED);
        for (int i = 0; i < candidates.length; i++) {
          world.useKernels(candidates[i]);
          candidateProblems[i] = CudaCheck.verify(world, eng, wl, cpu, CommConfig.Variant.FUSED);
        }
        world.useKernels(CudaWorld.KERNELS_TUNED);
      } finally {
        cpu.close();
      }
      progress.printf("verified: %s (untuned fused kernels: %s); timing %d + %d warm-up iterations of each...%n",
          problem == null ? "yes" : "NO (" + problem + ")", simpleProblem == null ? "yes" : "NO (" + simpleProblem + ")",
          c.iters(), c.warmup());
      world.timing(true);
      timeDispatch(c, world, eng, CommConfig.Variant.FUSED, ms[DISPATCH_FUSED]);
      timeDispatch(c, world, eng, CommConfig.Variant.UNFUSED, ms[DISPATCH_UNFUSED]);
      world.useKernels(CudaWorld.KERNELS_SIMPLE);
      if (!relays(c)) timeDispatch(c, world, eng, CommConfig.Variant.FUSED, simpleMs[0]);
      world.useKernels(CudaWorld.KERNELS_TUNED);
      // the fused combine needs a fused dispatch's pair records: each combine timing dispatches fused first
      timeCombine(c, world, eng, CommConfig.Variant.FUSED, ms[COMBINE_FUSED]);
      timeCombine(c, world, eng, CommConfig.Variant.UNFUSED, ms[COMBINE_UNFUSED]);
      world.useKernels(CudaWorld.KERNELS_SIMPLE);
      if (!relays(c)) timeCombine(c, world, eng, CommConfig.Variant.FUSED, simpleMs[1]);
      for (int i = 0; i < candidates.length; i++) {
        world.useKernels(candidates[i]);
        double[] vm = new double[c.iters()];
        timeCombine(c, world, eng, CommConfig.Variant.FUSED, vm);
        progress.printf("combine candidate %d: %.1f us (tuned %.1f us)%s%n", candidates[i], median(vm) * 1e3,
            median(ms[COMBINE_FUSED]) * 1e3, candidateProblems[i] == null ? "" : "; WRONG: " + candidateProblems[i]);
      }
      world.useKernels(CudaWorld.KERNELS_TUNED);
      world.timing(false);
      shortHolds = world.shortHolds();
    }
    if (shortHolds > 0) {
      progress.printf("note: %d timed calls had started before their enqueue ended (launch latency counted)%n", shortHolds);
    }
    BenchResult r = assemble(c, av.device(), pairs, rows, dispatchRowBytes(wl), wl.outRowBytes(), ms, copyMs, problem, rowStats);
    if (relays(c)) return r;
    return r.withSimpleKernels(new BenchResult.SimpleKernels(
        median(simpleMs[0]) * 1e3, median(simpleMs[1]) * 1e3, simpleProblem == null));
  }

  /**
   * {@code warmup + iters} dispatches of variant {@code v} through the device path, every rank on its
   * own thread and stream; rank 0 reads each call's device time.
   */
  private static void timeDispatch(BenchConfig c, CudaWorld world, DeviceWorkload eng, CommConfig.Variant v, double[] out) {
    world.useVariant(v);
    world.run(comm -> {
      int r = comm.rank();
      for (int i = 0; i < c.warmup() + c.iters(); i++) {
        comm.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
        if (r == 0 && i >= c.warmup()) out[i - c.warmup()] = world.lastDeviceMs();
      }
      return null;
    });
  }

  /** One fused dispatch, then {@code warmup + iters} combines of variant {@code v} on its result. */
  private static void timeCombine(BenchConfig c, CudaWorld world, DeviceWorkload eng, CommConfig.Variant v, double[] out) {
    world.useVariant(CommConfig.Variant.FUSED);
    List<DeviceDispatched> ds = world.run(comm -> comm.dispatch(eng.x(comm.rank()), eng.routing(comm.rank()),
        eng.stream(comm.rank())));
    world.useVariant(v);
    world.run(comm -> {
      int r = comm.rank();
      DeviceDispatched d = ds.get(r);
      for (int i = 0; i < c.warmup() + c.iters(); i++) {
        comm.combine(d, eng.y(r, d.receivedRows()), eng.out(r), eng.stream(r));
        if (r == 0 && i >= c.warmup()) out[i - c.warmup()] = world.lastDeviceMs();
      }
      return null;
    });
  }

  /**
   * Combine tuning candidates to time after the main figures ({@code -Dmoeyard.bench.combine-candidates=2,3,...};
   * none by default): each is checked against the cpu combine output and timed like the tuned kernels.
   */
  static int[] combineCandidates() {
    String v = System.getProperty("moeyard.bench.combine-candidates", "").trim();
    if (v.isEmpty()) return new int[0];
    try {
      return java.util.Arrays.stream(v.split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray();
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("-Dmoeyard.bench.combine-candidates=" + v + ": want numbers separated by commas");
    }
  }

  /** Null when the CUDA backend accepts the shape (top-k, ranks, slots), else why not. */
  public static String problem(BenchConfig c) {
    try {
      DType out = c.dtype() == DType.FP8_E4M3 ? DType.BF16 : c.dtype();
      CudaBackend.check(c.expertMap(), CommConfig.of(c.tokens(), c.hidden(), c.topk(), c.dtype(), out));
      return null;
    } catch (IllegalArgumentException e) {
      return "the cuda backend cannot run this shape: " + e.getMessage();
    }
  }

  /**
   * Whether the fused calls take the node relay, which always runs its own and the tuned dispatch
   * kernels: the untuned kernels are then not timed (their figure would be the tuned relay's).
   */
  static boolean relays(BenchConfig c) {
    return c.nodes() > 1 && c.nodePath() == CommConfig.NodePath.RELAY;
  }

  /** Bytes one token-rank pair carries in dispatch: the row and its FP8 scales. */
  static long dispatchRowBytes(Workload wl) {
    return wl.rowBytes() + (long) wl.scalesPerRow() * Float.BYTES;
  }

  /**
   * The result from the measured figures (no device needed).
   *
   * @param pairs token-rank pairs received by each rank
   * @param rows rows (selections) received by each rank
   * @param dispatchRowBytes bytes per pair in dispatch (row + FP8 scales)
   * @param combineRowBytes bytes per pair in combine (one partial row)
   * @param ms device milliseconds per call: [dispatch fused, dispatch unfused, combine fused,
   *     combine unfused][iteration]
   * @param copyMs median device milliseconds of one copy of all ranks' dispatch bytes
   * @param problem the first verification difference, or null
   * @param rowStats where the dispatched rows went (the bench's rows block), or null
   */
  static BenchResult assemble(
      BenchConfig c, String device, int[] pairs, int[] rows, long dispatchRowBytes, long combineRowBytes, double[][] ms,
      double copyMs, String problem, BenchResult.Rows rowStats) {
    double db = 0;
    double cb = 0;
    for (int p : pairs) {
      db += (double) p * dispatchRowBytes;
      cb += (double) p * combineRowBytes;
    }
    if (pairs.length > 0) {
      db /= pairs.length;
      cb /= pairs.length;
    }
    double written = 0;
    for (int n : rows) written += (double) n * dispatchRowBytes;
    if (rows.length > 0) written /= rows.length;
    double copyUs = copyMs * 1e3;
    return new BenchResult(c, "cuda", device, db, cb, written,
        timing(ms[DISPATCH_FUSED], db), timing(ms[DISPATCH_UNFUSED], db),
        timing(ms[COMBINE_FUSED], cb), timing(ms[COMBINE_UNFUSED], cb),
        copyUs, db / (copyUs * 1e3), problem == null,
        problem == null
            ? "cuda fused == cuda unfused == cpu fused, bit for bit: rows, weights, scales, counts, row sources, combine"
            : problem,
        null, rowStats);
  }

  private static BenchResult.Timing timing(double[] ms, double bytes) {
    double us = median(ms) * 1e3;
    return new BenchResult.Timing(us, bytes / (us * 1e3));
  }

  static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    int n = s.length;
    return n == 0 ? Double.NaN : n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
  }
}
