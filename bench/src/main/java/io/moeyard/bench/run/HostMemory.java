package io.moeyard.bench.run;

import io.moeyard.engine.DType;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What the CPU bench will hold in off-heap buffers, and whether this machine has it. The kernel
 * kills a process that outgrows memory without a word (the deepseek-v3 preset at 4096 tokens
 * needs ~26 GB with 8 ranks), so the bench checks first and names a size that fits.
 */
public final class HostMemory {
  private HostMemory() {}

  /** Share of the available memory the bench may plan to use: the JVM, page tables and the OS need the rest. */
  static final double USABLE = 0.85;

  /**
   * Bytes of row buffers the CPU bench allocates for {@code c}, all ranks together, at the
   * expected counts of uniform routing: per rank its tokens (x and two combine outputs), the
   * rows it receives (y; the fused and unfused receive buffers; the unfused path's permuted and
   * staging buffers; the unfused combine's returned rows and their sort-back) and its token-rank
   * pairs (the fused combine's partials); on several nodes the node relay's buffers.
   */
  public static long benchBytes(BenchConfig c) {
    return benchBytes(c, 0);
  }

  /**
   * As {@link #benchBytes(BenchConfig)} with {@code procs} rank processes on this machine
   * ({@code bench --procs}; 0: rank threads of one JVM). Each process builds every rank's inputs
   * from the seed (x and the expert outputs: the reference checks a rank's rows against every
   * sender's) beside its own rank's buffers, so the inputs count once per process.
   */
  public static long benchBytes(BenchConfig c, int procs) {
    DType out = c.dtype() == DType.FP8_E4M3 ? DType.BF16 : c.dtype();
    double in = (double) c.hidden() * c.dtype().bytes()
        + (c.dtype() == DType.FP8_E4M3 ? (double) c.hidden() / DType.FP8_SCALE_BLOCK * Float.BYTES : 0);
    double ob = (double) c.hidden() * out.bytes();
    double t = c.tokens();
    double received = t * c.topk();
    double pairs = t * expectedRanksPerToken(c);
    double perRank = t * in + 4 * received * in + t * 2 * ob + 3 * received * ob + pairs * ob;
    if (c.nodes() > 1 && c.nodePath() == io.moeyard.comm.CommConfig.NodePath.RELAY) {
      // the node relay's slots, sized for the worst case: messages each way, combine staging,
      // node partials sent and received
      double remote = (double) (c.nodes() - 1) * t;
      int local = c.ranks() / c.nodes();
      perRank += 2 * remote * (in + 8.0 * c.topk()) + remote * Math.min(c.topk(), local) * ob + 2 * remote * ob;
    }
    if (procs == 0) return (long) (perRank * c.ranks());
    double inputs = t * in + received * ob;
    return (long) (procs * (inputs * c.ranks() + perRank - inputs));
  }

  /** Expected distinct destination ranks of a token with top-k distinct uniform experts. */
  static double expectedRanksPerToken(BenchConfig c) {
    int e = c.experts(), k = c.topk(), perRank = e / Math.max(1, c.ranks());
    // P(a given rank gets none of the k experts) = C(e - perRank, k) / C(e, k)
    double miss = 1;
    for (int i = 0; i < k; i++) miss *= Math.max(0, (double) (e - perRank - i)) / (e - i);
    return c.ranks() * (1 - miss);
  }

  /** MemAvailable from /proc/meminfo, else the JVM's view of free physical memory; -1 if unknown. */
  public static long availableBytes() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
        if (line.startsWith("MemAvailable:")) {
          return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        }
      }
    } catch (IOException | NumberFormatException | SecurityException e) {
      // not Linux, or no procfs: ask the JVM
    }
    if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
      return os.getFreeMemorySize();
    }
    return -1;
  }

  /** Null when {@code c} fits in {@code available} bytes (or that is unknown), else the problem and a --tokens that fits. */
  static String problem(BenchConfig c, long available) {
    return problem(c, available, 0);
  }

  /** As {@link #problem(BenchConfig, long)} with {@code procs} rank processes on this machine (0: threads). */
  static String problem(BenchConfig c, long available, int procs) {
    if (available <= 0) return null;
    long need = benchBytes(c, procs);
    long usable = (long) (available * USABLE);
    if (need <= usable) return null;
    int fit = c.tokens();
    while (fit > 0 && benchBytes(c.withTokens(fit), procs) > usable) fit /= 2;
    return String.format("this run needs about %.1f GiB of buffers (%d ranks x %d tokens, hidden %d %s, top-%d%s), "
            + "but only %.1f GiB of memory is available; %s",
        need / GIB, c.ranks(), c.tokens(), c.hidden(), c.dtype().cliName(), c.topk(),
        procs == 0 ? "" : "; " + procs + " rank processes here, each with every rank's inputs", available / GIB,
        fit > 0 ? "--tokens " + fit + " fits" : "lower --ranks or --hidden");
  }

  /** {@link #problem(BenchConfig, long)} against this machine. */
  public static String problem(BenchConfig c) {
    return problem(c, availableBytes());
  }

  /** {@link #problem(BenchConfig, long, int)} against this machine. */
  public static String problem(BenchConfig c, int procs) {
    return problem(c, availableBytes(), procs);
  }

  private static final double GIB = 1024.0 * 1024 * 1024;
}
