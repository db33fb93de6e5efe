package io.moeyard.testkit;

import io.moeyard.comm.CommConfig;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.IntFunction;
import java.util.stream.IntStream;

/**
 * One dispatch/combine problem that every backend runs: the expert map, each rank's routing, token
 * rows and expert outputs, and its {@link NaiveReference}. Rows are raw little-endian element
 * bytes on the heap (what the CUDA backend uploads) seen by the CPU collectives through
 * heap-backed {@link RowBuffer}s over the same arrays ({@link #x}, {@link #y}), so every backend
 * reads the very same bits. The arrays are the workload's own: read them, do not change them.
 *
 * <p>{@link #random} is the one random-workload generator of the data-path tests and of {@code
 * moeyard selftest}; {@link #of} builds one around a routing a test chooses.
 */
public final class Workload {
  public final ExpertMap map;
  public final int[] tokens;
  public final int topk;
  public final int hidden;
  public final DType dtype;
  /** Dtype of the expert outputs and the combine (BF16 when the rows are FP8). */
  public final DType outType;
  /** {@code [rank][tokens * topk]}: expert ids, -1 = not routed. */
  public final int[][] idx;
  /** {@code [rank][tokens * topk]}: the top-k weights. */
  public final float[][] w;
  /** {@code [rank][tokens * hidden * dtype.bytes()]}: the token rows. */
  public final byte[][] x;
  /** {@code [rank][tokens * hidden / 128]} for FP8, else empty arrays. */
  public final float[][] xScales;
  /** {@code [rank][ref.rowsReceivedBy(rank) * hidden * outType.bytes()]}: the expert outputs. */
  public final byte[][] y;
  public final NaiveReference ref;

  /**
   * Fills x and y from {@code xRandom(r)} / {@code yRandom(r)} with {@link #fill}, ranks in
   * parallel (each rank has its own generator, so the bits do not depend on the schedule).
   */
  public Workload(
      ExpertMap map, int[] tokens, int topk, int hidden, DType dtype, int[][] idx, float[][] w,
      IntFunction<SplittableRandom> xRandom, IntFunction<SplittableRandom> yRandom) {
    this.map = map;
    this.tokens = tokens.clone();
    this.topk = topk;
    this.hidden = hidden;
    this.dtype = dtype;
    this.outType = combineType(dtype);
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
      fill(x(r), xRandom.apply(r));
      fill(y(r), yRandom.apply(r));
    });
  }

  /** The combine dtype that goes with a dispatch dtype: itself, BF16 for FP8. */
  public static DType combineType(DType dispatchType) {
    return dispatchType == DType.FP8_E4M3 ? DType.BF16 : dispatchType;
  }

  // ---------------------------------------------------------------------------------------------
  // Generators

  /**
   * A random workload, a pure function of {@code seed}: 1..8 ranks (one case in eight: up to 16)
   * on any number of nodes that divides them, 1..4 or 1..32 slots per rank, the trivial map or
   * replicas anywhere, top-k 1..8 (wide cases: 1..16; one case in six: 1), every dtype (FP8 with
   * scales), odd hidden sizes, 0..maxTokens tokens per rank (some ranks empty, one case in
   * sixteen every rank), -1 entries (none to all), and routings that are uniform, skewed onto a
   * few experts (so that some ranks receive nothing) or send every token to one expert.
   */
  public static Workload random(long seed, int maxTokens) {
    SplittableRandom rnd = new SplittableRandom(seed);
    boolean wide = rnd.nextInt(8) == 0;
    int ranks = 1 + rnd.nextInt(wide ? 16 : 8);
    int[] divisors = IntStream.rangeClosed(1, ranks).filter(d -> ranks % d == 0).toArray();
    int local = divisors[rnd.nextInt(divisors.length)];
    return random(rnd, new Topology(ranks / local, local), wide, maxTokens);
  }

  /**
   * As {@link #random(long, int)} on a topology the caller fixed (the shape a world of rank
   * processes was started with): everything but the topology random from {@code seed}.
   */
  public static Workload random(long seed, Topology topo, int maxTokens) {
    SplittableRandom rnd = new SplittableRandom(seed);
    return random(rnd, topo, rnd.nextInt(8) == 0, maxTokens);
  }

  private static Workload random(SplittableRandom rnd, Topology topo, boolean wide, int maxTokens) {
    int ranks = topo.worldSize();
    int spr = 1 + rnd.nextInt(rnd.nextBoolean() ? 4 : 32);
    int slots = ranks * spr;
    int experts = rnd.nextInt(3) == 0 ? slots : 1 + rnd.nextInt(slots);
    ExpertMap map = experts == slots && rnd.nextBoolean()
        ? ExpertMap.trivial(topo, experts) : randomMap(rnd, topo, spr, experts);
    int topk = rnd.nextInt(6) == 0 ? 1 : 1 + rnd.nextInt(Math.min(wide ? 16 : 8, experts));
    DType dtype = DType.values()[rnd.nextInt(DType.values().length)];
    int hidden = switch (dtype) {
      case FP8_E4M3 -> DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(3));
      default -> rnd.nextInt(4) == 0 ? 16 * (1 + rnd.nextInt(32)) : 1 + rnd.nextInt(300);
    };
    boolean noTokens = rnd.nextInt(16) == 0;
    int[] tokens = new int[ranks];
    for (int r = 0; r < ranks; r++) tokens[r] = noTokens || rnd.nextInt(5) == 0 ? 0 : rnd.nextInt(maxTokens + 1);
    double unrouted = new double[] {0, 0, 0.1, 0.5, 1}[rnd.nextInt(5)];
    int[][] idx = new int[ranks][];
    switch (rnd.nextInt(4)) {
      case 0 -> { // skewed: every token picks from a few hot experts
        int pool = Math.min(experts, topk + rnd.nextInt(3));
        for (int r = 0; r < ranks; r++) idx[r] = randomRouting(rnd, tokens[r], pool, topk, unrouted);
      }
      case 1 -> { // every token to one expert, the rest of its entries -1
        int hot = rnd.nextInt(experts);
        for (int r = 0; r < ranks; r++) {
          idx[r] = new int[tokens[r] * topk];
          Arrays.fill(idx[r], -1);
          for (int t = 0; t < tokens[r]; t++) idx[r][t * topk + rnd.nextInt(topk)] = hot;
        }
      }
      default -> {
        for (int r = 0; r < ranks; r++) idx[r] = randomRouting(rnd, tokens[r], experts, topk, unrouted);
      }
    }
    return of(map, topk, hidden, dtype, tokens, idx, rnd.nextLong());
  }

  /** The edge cases {@link #edge} draws, in the order of its {@code which}. */
  public static final int EDGE_CASES = 4;

  /**
   * Edge case {@code which} (0 .. {@link #EDGE_CASES} - 1) on {@code topo}, the rest random from
   * {@code seed}, for tests that run few cases and must still meet each: 0 the last rank's experts
   * are never chosen, so it receives nothing (on one rank: a plain random routing); 1 no tokens on
   * any rank; 2 one rank without tokens; 3 every token to one expert at top-1.
   */
  public static Workload edge(long seed, Topology topo, int maxTokens, int which) {
    if (which < 0 || which >= EDGE_CASES) throw new IllegalArgumentException("edge case must be in [0, " + EDGE_CASES + "), got " + which);
    SplittableRandom rnd = new SplittableRandom(seed);
    int ranks = topo.worldSize();
    DType dtype = DType.values()[rnd.nextInt(DType.values().length)];
    int hidden = DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(3));
    int spr = 1 + rnd.nextInt(4);
    int experts = ranks * spr;
    ExpertMap map = ExpertMap.trivial(topo, experts);
    int choosable = which == 0 && ranks > 1 ? experts - spr : experts; // trivial map: the last spr experts live on the last rank
    int topk = which == 3 ? 1 : 1 + rnd.nextInt(Math.min(6, choosable));
    int[] tokens = new int[ranks];
    for (int r = 0; r < ranks; r++) tokens[r] = which == 1 ? 0 : 1 + rnd.nextInt(Math.max(1, maxTokens));
    if (which == 2) tokens[rnd.nextInt(ranks)] = 0;
    int hot = rnd.nextInt(choosable);
    int[][] idx = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      if (which == 3) {
        idx[r] = new int[tokens[r]];
        Arrays.fill(idx[r], hot);
      } else {
        idx[r] = randomRouting(rnd, tokens[r], choosable, topk, 0.1);
      }
    }
    return of(map, topk, hidden, dtype, tokens, idx, rnd.nextLong());
  }

  /** A workload with the given routing; weights, token rows and expert outputs random from {@code seed}. */
  public static Workload of(ExpertMap map, int topk, int hidden, DType dtype, int[] tokens, int[][] idx, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    float[][] w = new float[map.ranks()][];
    for (int r = 0; r < w.length; r++) {
      w[r] = new float[tokens[r] * topk];
      for (int i = 0; i < w[r].length; i++) w[r][i] = (float) rnd.nextDouble(-2, 2);
    }
    long xs = rnd.nextLong();
    long ys = rnd.nextLong();
    return new Workload(map, tokens, topk, hidden, dtype, idx, w,
        r -> new SplittableRandom(xs + 1_000_003L * r), r -> new SplittableRandom(ys + 1_000_033L * r));
  }

  /**
   * A random map of {@code experts} experts onto {@code slotsPerRank} slots per rank: every
   * expert has a slot, the others are replicas of random experts, all at random places.
   */
  public static ExpertMap randomMap(SplittableRandom rnd, Topology topology, int slotsPerRank, int experts) {
    int slots = topology.worldSize() * slotsPerRank;
    if (experts < 1 || experts > slots) {
      throw new IllegalArgumentException("experts must be in [1, " + slots + "], got " + experts);
    }
    int[] p2l = new int[slots];
    for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : rnd.nextInt(experts);
    for (int p = slots - 1; p > 0; p--) {
      int j = rnd.nextInt(p + 1);
      int t = p2l[p];
      p2l[p] = p2l[j];
      p2l[j] = t;
    }
    return ExpertMap.of(topology, experts, p2l);
  }

  /**
   * {@code tokens * topk} expert ids: distinct uniformly random experts per token, each entry -1
   * with probability {@code unrouted}.
   */
  public static int[] randomRouting(SplittableRandom rnd, int tokens, int experts, int topk, double unrouted) {
    if (topk > experts) throw new IllegalArgumentException("top-" + topk + " of " + experts + " experts");
    int[] idx = new int[tokens * topk];
    int[] perm = new int[experts];
    for (int e = 0; e < experts; e++) perm[e] = e;
    for (int t = 0; t < tokens; t++) {
      for (int k = 0; k < topk; k++) {
        int j = k + rnd.nextInt(experts - k);
        int tmp = perm[k];
        perm[k] = perm[j];
        perm[j] = tmp;
        idx[t * topk + k] = unrouted > 0 && rnd.nextDouble() < unrouted ? -1 : perm[k];
      }
    }
    return idx;
  }

  /**
   * Random finite values in [-2, 2) (never all zeros, which would hide unwritten rows); FP8 rows
   * get random non-NaN bytes and scales in [0.01, 1).
   */
  public static void fill(RowBuffer b, SplittableRandom rnd) {
    if (b.dtype() == DType.FP8_E4M3) {
      long n = (long) b.rows() * b.hidden();
      for (long i = 0; i < n; i++) {
        int v = rnd.nextInt(256);
        if ((v & 0x7F) == 0x7F) v ^= 1; // not NaN
        b.segment().set(ValueLayout.JAVA_BYTE, b.offset() + i, (byte) v);
      }
      for (long i = 0; i < (long) b.rows() * b.scalesPerRow(); i++) {
        b.scales().setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) rnd.nextDouble(0.01, 1));
      }
      return;
    }
    for (int row = 0; row < b.rows(); row++) for (int c = 0; c < b.hidden(); c++) b.setFloat(row, c, (float) rnd.nextDouble(-2, 2));
  }

  // ---------------------------------------------------------------------------------------------
  // Views

  public int ranks() {
    return map.ranks();
  }

  /** The most tokens a rank has. */
  public int maxTokens() {
    return Arrays.stream(tokens).max().orElse(0);
  }

  /** A CPU communicator's config for this workload (fused, worst-case receive buffer). */
  public CommConfig config() {
    return CommConfig.of(maxTokens(), hidden, topk, dtype, outType);
  }

  /** Rank r's tokens as a heap-backed row buffer over {@code x[r]} (and its scales). */
  public RowBuffer x(int r) {
    MemorySegment sc = dtype.hasScales() ? MemorySegment.ofArray(xScales[r]) : null;
    return new RowBuffer(MemorySegment.ofArray(x[r]), 0, tokens[r], hidden, dtype, sc);
  }

  /** Rank d's expert outputs as a heap-backed row buffer over {@code y[d]}. */
  public RowBuffer y(int d) {
    return new RowBuffer(MemorySegment.ofArray(y[d]), 0, ref.rowsReceivedBy(d), hidden, outType, null);
  }

  /** Every rank's {@link #x}. */
  public RowBuffer[] xs() {
    return IntStream.range(0, ranks()).mapToObj(this::x).toArray(RowBuffer[]::new);
  }

  /** Every rank's {@link #y}. */
  public RowBuffer[] ys() {
    return IntStream.range(0, ranks()).mapToObj(this::y).toArray(RowBuffer[]::new);
  }

  public Routing routing(int r) {
    return new Routing(tokens[r], topk, idx[r], w[r]);
  }

  public long rowBytes() {
    return (long) hidden * dtype.bytes();
  }

  public long outRowBytes() {
    return (long) hidden * outType.bytes();
  }

  public int scalesPerRow() {
    return dtype.hasScales() ? hidden / DType.FP8_SCALE_BLOCK : 0;
  }

  /** One line naming the shape, for messages. */
  public String describe() {
    return String.format(Locale.ROOT, "ranks=%d (%d per node) slots/rank=%d experts=%d top-%d hidden=%d %s tokens=%s",
        ranks(), map.topology().localRanks(), map.slotsPerRank(), map.experts(), topk, hidden, dtype.cliName(),
        Arrays.toString(tokens));
  }

  @Override
  public String toString() {
    return describe();
  }
}
