package io.moeyard.bench.run;

import io.moeyard.comm.CommConfig;
import io.moeyard.cuda.CudaAvailability;
import io.moeyard.cuda.CudaBackend;
import io.moeyard.cuda.CudaWorld;
import io.moeyard.cuda.DeviceWorkload;
import io.moeyard.engine.RowBuffer;
import io.moeyard.testkit.Workload;
import java.io.PrintStream;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * {@code moeyard selftest}: many random configurations, every output of one backend compared bit
 * for bit with the CPU fused backend.
 *
 * <p>A case is the test kit's {@link Workload#random} (the data-path tests' generator: 1..16 ranks
 * on any number of nodes, replicas, top-k 1..16, every dtype, odd hidden sizes, empty ranks, -1
 * entries, skewed and one-expert routings) and a random pipelining chunk. {@code cpu}: the fused
 * path as a communicator runs it (through the node relay on several nodes) vs the kit's {@code
 * NaiveReference}, and the single-hop fused path and the unfused one vs it; {@code cuda}: both CUDA variants
 * through the communicators' device path, and the fused one through their host path, vs the CPU
 * fused path ({@link CudaCheck#verify}). Each case has its own seed, printed on failure; replay one
 * case with {@code --case-seed}.
 */
public final class SelfTest {
  private SelfTest() {}

  /** Exit code 0 when every case passes, 1 when one fails, 3 when the backend cannot run here. */
  public static int run(String backend, int cases, long seed, int maxTokens, Long caseSeed, PrintStream out) {
    boolean cuda = backend.equals("cuda");
    String name = cuda ? "cuda" : "cpu";
    if (cuda) {
      CudaAvailability av = CudaBackend.availability();
      if (!av.available()) {
        out.println(av.message());
        return 3;
      }
      out.println("moeyard selftest: " + av.message());
    }
    long[] seeds = caseSeed != null ? new long[] {caseSeed} : caseSeeds(seed, cases);
    int failed = 0;
    long t0 = System.nanoTime();
    long lastReport = t0;
    for (int i = 0; i < seeds.length; i++) {
      Workload wl = null;
      String problem;
      try {
        wl = randomCase(seeds[i], maxTokens);
        int chunk = chunkOf(seeds[i]);
        problem = cuda ? checkCuda(wl, chunk) : checkCpu(wl, chunk);
      } catch (RuntimeException | Error e) {
        problem = "threw " + e;
      }
      if (problem != null) {
        failed++;
        out.printf(Locale.ROOT, "FAIL case %d seed=%d: %s: %s%n", i, seeds[i], wl == null ? "?" : wl.describe(), problem);
      }
      long now = System.nanoTime();
      if (now - lastReport > PROGRESS_NANOS && i + 1 < seeds.length) {
        lastReport = now;
        System.err.printf(Locale.ROOT, "selftest: %d/%d cases, %d failed, %.0f s, %d MB off-heap live%n",
            i + 1, seeds.length, failed, (now - t0) / 1e9, io.moeyard.engine.OffHeap.liveBytes() >> 20);
      }
    }
    out.printf(Locale.ROOT, "moeyard selftest --backend %s: %d cases, %d passed, %d failed (%s, %.1f s)%n",
        name, seeds.length, seeds.length - failed, failed,
        caseSeed != null ? "case seed " + caseSeed : "seed " + seed, (System.nanoTime() - t0) / 1e9);
    if (failed > 0) out.printf("replay a case: moeyard selftest --backend %s --case-seed <seed>%n", name);
    return failed == 0 ? 0 : 1;
  }

  /** A progress line on stderr this often, so a long run shows it is alive and not growing. */
  private static final long PROGRESS_NANOS = 30_000_000_000L;

  static long[] caseSeeds(long seed, int cases) {
    SplittableRandom rnd = new SplittableRandom(seed);
    long[] s = new long[cases];
    for (int i = 0; i < cases; i++) s[i] = rnd.nextLong() & Long.MAX_VALUE;
    return s;
  }

  private static int chunkOf(long caseSeed) {
    int[] chunks = {1, 3, 16, 128, 1000};
    return chunks[new SplittableRandom(caseSeed ^ 0x5DEECE66DL).nextInt(chunks.length)];
  }

  /** The random problem of one case: the kit's generator, a pure function of its seed. */
  static Workload randomCase(long caseSeed, int maxTokens) {
    return Workload.random(caseSeed, maxTokens);
  }

  /**
   * CPU: fused over the node relay vs the kit's NaiveReference, single-hop fused and unfused vs it;
   * null when all agree bit for bit.
   */
  static String checkCpu(Workload wl, int chunk) {
    try (CpuRun fused = CpuRun.run(wl, true, true, chunk); CpuRun direct = CpuRun.run(wl, true, false, chunk);
        CpuRun unfused = CpuRun.run(wl, false, chunk)) {
      int ranks = wl.ranks();
      RowBuffer[] x = new RowBuffer[ranks];
      RowBuffer[] y = new RowBuffer[ranks];
      for (int r = 0; r < ranks; r++) {
        x[r] = wl.x(r);
        y[r] = wl.y(r);
      }
      for (int r = 0; r < ranks; r++) {
        String p = wl.ref.checkDispatch(r, fused.recv[r], fused.rows[r], x);
        if (p == null) p = wl.ref.checkCombine(r, wl.w[r], y, fused.out[r]);
        if (p != null) return "cpu fused vs naive reference: " + p;
      }
      for (int r = 0; r < ranks; r++) {
        String p = sameCpu(fused, direct, wl, r);
        if (p != null) return "cpu single-hop fused vs node relay: " + p;
        p = CudaCheck.compareInts(fused.pairSrc[r], direct.pairSrc[r], "pair source ranks", r);
        if (p == null) p = CudaCheck.compareInts(fused.pairToken[r], direct.pairToken[r], "pair source tokens", r);
        if (p != null) return "cpu single-hop fused vs node relay: " + p;
        p = sameCpu(fused, unfused, wl, r);
        if (p != null) return "cpu unfused vs fused: " + p;
      }
      return null;
    }
  }

  private static String sameCpu(CpuRun want, CpuRun got, Workload wl, int r) {
    if (want.rows[r] != got.rows[r]) return "rank " + r + " received " + got.rows[r] + " rows, fused " + want.rows[r];
    String p = CudaCheck.compareInts(want.slotCounts[r], got.slotCounts[r], "slot counts", r);
    if (p == null) p = CudaCheck.compareRows(want.recv[r].segment(), want.recv[r].offset(), (long) want.rows[r] * wl.rowBytes(),
        bytes(got.recv[r], (long) got.rows[r] * wl.rowBytes()), wl.rowBytes(), "received row", r);
    if (p == null) p = CudaCheck.compareFloats(want.recvWeights[r], got.recvWeights[r], "received weight of row", r);
    if (p == null) p = CudaCheck.compareFloats(want.recvScales[r], got.recvScales[r], "received fp8 scale", r);
    if (p == null) p = CudaCheck.compareInts(want.numTokensPerRank[r], got.numTokensPerRank[r], "numTokensPerRank", r);
    if (p == null) p = CudaCheck.compareRows(want.out[r].segment(), want.out[r].offset(), want.out[r].byteSize(),
        bytes(got.out[r], got.out[r].byteSize()), wl.outRowBytes(), "combine output", r);
    return p;
  }

  private static byte[] bytes(RowBuffer b, long n) {
    return b.segment().asSlice(b.offset(), n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
  }

  /**
   * CUDA, through its communicators: both variants on the device path (the workload in device
   * memory, a stream per rank) and the fused one on the host path, vs the CPU fused path; null when
   * all agree bit for bit.
   */
  static String checkCuda(Workload wl, int chunk) {
    try (CpuRun cpu = CpuRun.run(wl, true, chunk); CudaWorld world = CudaCheck.open(wl);
        DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
      String p = CudaCheck.verify(world, eng, wl, cpu, CommConfig.Variant.FUSED, CommConfig.Variant.UNFUSED);
      return p != null ? p : CudaCheck.verifyHost(world, wl, cpu);
    }
  }
}
