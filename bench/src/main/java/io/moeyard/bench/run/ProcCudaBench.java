package io.moeyard.bench.run;

import io.moeyard.comm.CommConfig;
import io.moeyard.cuda.CudaAvailability;
import io.moeyard.cuda.CudaBackend;
import io.moeyard.cuda.CudaCommunicator;
import io.moeyard.cuda.CudaUnavailableException;
import io.moeyard.cuda.CudaWorld;
import io.moeyard.cuda.DeviceDispatched;
import io.moeyard.cuda.DeviceWorkload;
import io.moeyard.engine.transport.Transport;
import io.moeyard.testkit.Workload;
import java.io.PrintStream;
import java.util.Map;

/**
 * {@code moeyard bench --backend cuda --procs N}, inside one rank process: this rank of
 * {@link CudaBench} with one rank per process ({@link CudaWorld#join}: the peers' device memory
 * through CUDA IPC, the host meetings over shared memory, or across machines ({@code --machines})
 * over a {@code ClusterTransport} with NCCL between the machines), on the same inputs and with the
 * same clock as the virtual ranks' bench, so that the two compare on one GPU. Each process builds
 * the whole workload from the seed (the inputs are the seed's, whichever process holds them) and
 * uploads only its rank's part; the reference is this rank's part of the CPU fused path, run over
 * the same transport before the CUDA world opens. Each machine's clock rank times its machine
 * (rank 0 on one machine, where the device clock spans all ranks' streams through IPC events); a
 * call takes as long as its longest machine. Rank 0 measures the copy roofline and returns the
 * result; the others return null.
 */
public final class ProcCudaBench {
  private ProcCudaBench() {}

  public static BenchResult runRank(BenchConfig c, boolean machines, PrintStream progress) {
    // CUDA's start-up before the rendezvous, so that it does not count against the ranks' timeout;
    // its verdict after it, so that a rank without CUDA fails every rank at once
    CudaAvailability av = CudaBackend.availability();
    Map<String, String> agreed = ProcBench.agreed(c);
    agreed.put("backend", "cuda");
    agreed.put("machines", Boolean.toString(machines));
    try (RankTransport joined = RankTransport.join(agreed, machines)) {
      Transport t = joined.transport();
      if (t.size() != c.ranks()) {
        throw new IllegalArgumentException("the world has " + t.size() + " ranks, the bench was configured for " + c.ranks());
      }
      int r = t.rank();
      for (Object o : t.allGather(av.available() ? null : "rank " + r + ": " + av.message())) {
        if (o != null) throw new CudaUnavailableException((String) o);
      }
      PrintStream quiet = r == 0 ? progress : new PrintStream(PrintStream.nullOutputStream());
      quiet.printf("moeyard bench (cuda, %d rank processes, %s): %d ranks x %d tokens, hidden %d %s, %d experts top-%d;"
          + " preparing data...%n", t.size(), av.device(), c.ranks(), c.tokens(), c.hidden(), c.dtype().cliName(), c.experts(),
          c.topk());
      Workload wl = CpuBench.workload(c);
      int n = t.size();
      int[] pairs = new int[n];
      int[] rows = new int[n];
      long[][] rowCounts = new long[3][n];
      double[][] ms = new double[4][c.iters()];
      double[][] simpleMs = new double[2][c.iters()];
      double copyMs = Double.NaN;
      String problem;
      String simpleProblem;
      int shortHolds = 0;
      quiet.println("running this rank's part of the cpu fused path (over the same transport) for the reference...");
      // on the node path the cuda run takes, so that the rows block counts what crossed nodes there
      try (CpuRun cpu = CpuRun.runRank(t, wl, true, c.nodePath() == CommConfig.NodePath.RELAY, c.chunk())) {
        Object[] figures = t.allGather(new long[] {cpu.pairs[r], cpu.rows[r], cpu.rowCounts[0][r], cpu.rowCounts[1][r],
            cpu.rowCounts[2][r]});
        for (int q = 0; q < n; q++) {
          long[] f = (long[]) figures[q];
          pairs[q] = (int) f[0];
          rows[q] = (int) f[1];
          for (int k = 0; k < 3; k++) rowCounts[k][q] = f[2 + k];
        }
        try (CudaWorld world = CudaWorld.join(t, wl.map, CudaCheck.config(wl).withNodePath(c.nodePath()));
            DeviceWorkload eng = abortingOnFailure(t, () -> new DeviceWorkload(wl, 0, r))) {
          CudaCommunicator comm = world.communicator();
          t.barrier(); // every rank's device workload is uploaded
          if (r == 0) {
            long sum = 0;
            for (int p : pairs) sum += (long) p * CudaBench.dispatchRowBytes(wl);
            long allBytes = sum;
            copyMs = abortingOnFailure(t, () -> world.copyMillis(allBytes, c.iters()));
          }
          t.barrier(); // the copy alone on the GPU
          problem = verified(t, world, comm, eng, wl, cpu, CommConfig.Variant.FUSED, CommConfig.Variant.UNFUSED);
          world.useKernels(CudaWorld.KERNELS_SIMPLE);
          simpleProblem = CudaBench.relays(c) ? null : verified(t, world, comm, eng, wl, cpu, CommConfig.Variant.FUSED);
          world.useKernels(CudaWorld.KERNELS_TUNED);
          quiet.printf("verified: %s (untuned fused kernels: %s); timing %d + %d warm-up iterations of each...%n",
              problem == null ? "yes" : "NO (" + problem + ")", simpleProblem == null ? "yes" : "NO (" + simpleProblem + ")",
              c.iters(), c.warmup());
          world.timing(true);
          timeDispatch(c, world, comm, eng, CommConfig.Variant.FUSED, ms[CudaBench.DISPATCH_FUSED]);
          timeDispatch(c, world, comm, eng, CommConfig.Variant.UNFUSED, ms[CudaBench.DISPATCH_UNFUSED]);
          world.useKernels(CudaWorld.KERNELS_SIMPLE);
          if (!CudaBench.relays(c)) timeDispatch(c, world, comm, eng, CommConfig.Variant.FUSED, simpleMs[0]);
          world.useKernels(CudaWorld.KERNELS_TUNED);
          timeCombine(c, world, comm, eng, CommConfig.Variant.FUSED, ms[CudaBench.COMBINE_FUSED]);
          timeCombine(c, world, comm, eng, CommConfig.Variant.UNFUSED, ms[CudaBench.COMBINE_UNFUSED]);
          world.useKernels(CudaWorld.KERNELS_SIMPLE);
          if (!CudaBench.relays(c)) timeCombine(c, world, comm, eng, CommConfig.Variant.FUSED, simpleMs[1]);
          world.useKernels(CudaWorld.KERNELS_TUNED);
          world.timing(false);
          if (r == world.clockRank()) shortHolds = world.shortHolds();
          // across machines each machine's clock rank timed its machine: a call took as long as its longest machine
          longestMachine(t, ms, world.clockRank() == r);
          longestMachine(t, simpleMs, world.clockRank() == r);
          shortHolds = sum(t.allGather(shortHolds));
        }
      }
      if (r != 0) return null;
      if (shortHolds > 0) {
        progress.printf("note: %d timed calls had started before their enqueue ended (launch latency counted)%n", shortHolds);
      }
      BenchResult.Rows rowStats = BenchResult.Rows.of(rowCounts[0], rowCounts[1], rowCounts[2]);
      String over = io.moeyard.engine.transport.Machines.spanned(t)
          ? "on " + ProcBench.machineCount(t) + " machines (CUDA IPC within each, NCCL between)" : "over CUDA IPC";
      BenchResult res = CudaBench.assemble(c, n + " rank processes " + over + ", " + av.device(), pairs, rows,
          CudaBench.dispatchRowBytes(wl), wl.outRowBytes(), ms, copyMs, problem, rowStats);
      if (CudaBench.relays(c)) return res;
      return res.withSimpleKernels(new BenchResult.SimpleKernels(
          CudaBench.median(simpleMs[0]) * 1e3, CudaBench.median(simpleMs[1]) * 1e3, simpleProblem == null));
    }
  }

  /**
   * {@code body}, which only this rank runs: should it fail, the peers hear of it at once (the
   * transport aborts). Otherwise the world's closing barrier, which this rank would reach next,
   * would meet the peers' next collective instead of theirs.
   */
  private static <T> T abortingOnFailure(Transport t, java.util.function.Supplier<T> body) {
    try {
      return body.get();
    } catch (RuntimeException | Error e) {
      t.abort(e);
      throw e;
    }
  }

  /** Every rank checks its part of each variant; the first difference of any rank, the same on all. */
  private static String verified(Transport t, CudaWorld world, CudaCommunicator comm, DeviceWorkload eng, Workload wl,
      CpuRun cpu, CommConfig.Variant... variants) {
    String mine = null;
    for (CommConfig.Variant v : variants) {
      world.useVariant(v);
      String p = CudaCheck.verifyRank(comm, eng, wl, cpu, v);
      if (mine == null) mine = p;
    }
    for (Object o : t.allGather(mine)) {
      if (o != null) return (String) o;
    }
    return null;
  }

  /**
   * Replaces {@code ms} on rank 0 by the per-call maximum over the clock ranks' times ({@code clock}:
   * this rank keeps its machine's clock); on one machine that is rank 0's own.
   */
  private static void longestMachine(Transport t, double[][] ms, boolean clock) {
    int n = ms.length == 0 ? 0 : ms[0].length;
    long[] mine = null;
    if (clock) {
      mine = new long[ms.length * n];
      for (int k = 0; k < ms.length; k++) {
        for (int i = 0; i < n; i++) mine[k * n + i] = Double.doubleToRawLongBits(ms[k][i]);
      }
    }
    Object[] all = t.allGather(mine);
    if (t.rank() != 0) return;
    for (double[] row : ms) java.util.Arrays.fill(row, 0);
    for (Object o : all) {
      if (o == null) continue;
      long[] theirs = (long[]) o;
      for (int k = 0; k < ms.length; k++) {
        for (int i = 0; i < n; i++) ms[k][i] = Math.max(ms[k][i], Double.longBitsToDouble(theirs[k * n + i]));
      }
    }
  }

  private static int sum(Object[] counts) {
    int s = 0;
    for (Object o : counts) s += (Integer) o;
    return s;
  }

  /** {@code warmup + iters} dispatches of variant {@code v} on the device path; each machine's clock rank reads each call's device time. */
  private static void timeDispatch(BenchConfig c, CudaWorld world, CudaCommunicator comm, DeviceWorkload eng,
      CommConfig.Variant v, double[] out) {
    world.useVariant(v);
    int r = comm.rank();
    for (int i = 0; i < c.warmup() + c.iters(); i++) {
      comm.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
      if (r == world.clockRank() && i >= c.warmup()) out[i - c.warmup()] = world.lastDeviceMs();
    }
  }

  /** One fused dispatch, then {@code warmup + iters} combines of variant {@code v} on its result. */
  private static void timeCombine(BenchConfig c, CudaWorld world, CudaCommunicator comm, DeviceWorkload eng,
      CommConfig.Variant v, double[] out) {
    int r = comm.rank();
    world.useVariant(CommConfig.Variant.FUSED);
    DeviceDispatched d = comm.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
    world.useVariant(v);
    for (int i = 0; i < c.warmup() + c.iters(); i++) {
      comm.combine(d, eng.y(r, d.receivedRows()), eng.out(r), eng.stream(r));
      if (r == world.clockRank() && i >= c.warmup()) out[i - c.warmup()] = world.lastDeviceMs();
    }
  }
}
