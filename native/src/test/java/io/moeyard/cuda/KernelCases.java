package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The kit's workloads and {@link NaiveReference} in the CUDA backend's terms: kernel shapes and
 * the expected dispatch results ({@link Expected}), including what the kit leaves to
 * the backends (the pair records of a fused dispatch and a rank's own send layout), derived from
 * the reference's token-rank pairs. No layout or combine arithmetic of its own.
 */
final class KernelCases {
  private KernelCases() {}

  /** Most tokens per rank of the shapes built by {@link #trivial}. */
  static final int TRIVIAL_MAX_TOKENS = 1024;

  /** The trivial map (slot p = expert p) on {@code ranks / localRanks} nodes, at most {@link #TRIVIAL_MAX_TOKENS} tokens per rank. */
  static KernelShape trivial(int ranks, int localRanks, int slotsPerRank, int hidden, int topk, DType dtype) {
    ExpertMap map = ExpertMap.trivial(new Topology(ranks / localRanks, localRanks), ranks * slotsPerRank);
    return KernelShape.of(map, CommConfig.of(TRIVIAL_MAX_TOKENS, hidden, topk, dtype, Workload.combineType(dtype)));
  }

  /** The kernel shape of a workload (its map, dtypes and most tokens per rank). */
  static KernelShape shape(Workload wl) {
    return KernelShape.of(wl.map, wl.config());
  }

  /**
   * The kernel shape of a workload with room for {@code maxTokens} tokens per rank (at least its
   * own most), so that a call may dispatch fewer tokens than the buffers were sized for.
   */
  static KernelShape shape(Workload wl, int maxTokens) {
    return KernelShape.of(wl.map, CommConfig.of(Math.max(maxTokens, wl.maxTokens()), wl.hidden, wl.topk, wl.dtype, wl.outType));
  }

  /**
   * A random workload of the given shape: a random map with replicas ({@link Workload#randomMap}),
   * 0..maxTokens tokens per rank, distinct experts per token, each entry -1 with probability
   * {@code unrouted}.
   */
  static Workload random(SplittableRandom rnd, int ranks, int localRanks, int slotsPerRank, int experts, int topk,
      int hidden, DType dtype, int maxTokens, double unrouted) {
    ExpertMap map = Workload.randomMap(rnd, new Topology(ranks / localRanks, localRanks), slotsPerRank, experts);
    int[] tokens = new int[ranks];
    int[][] idx = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      tokens[r] = maxTokens == 0 ? 0 : rnd.nextInt(maxTokens + 1);
      idx[r] = Workload.randomRouting(rnd, tokens[r], experts, topk, unrouted);
    }
    return Workload.of(map, topk, hidden, dtype, tokens, idx, rnd.nextLong());
  }

  /** Routing given as a function: expert of entry {@code k} of token {@code t} on rank {@code r} (-1 = none). */
  interface Route {
    int expert(int rank, int token, int k);
  }

  /** A workload on {@code shape}'s map with the given routing; weights and rows random. */
  static Workload routed(KernelShape shape, int[] tokens, Route route, long seed) {
    int k = shape.topk();
    int[][] idx = new int[shape.ranks()][];
    for (int r = 0; r < idx.length; r++) {
      idx[r] = new int[tokens[r] * k];
      for (int t = 0; t < tokens[r]; t++) {
        for (int j = 0; j < k; j++) idx[r][t * k + j] = route.expert(r, t, j);
      }
    }
    return Workload.of(shape.map(), k, shape.hidden(), shape.dispatchType(), tokens, idx, seed);
  }

  /**
   * One rank's expected dispatch: the rows, FP8 scales and weights in receive order, rows per local
   * slot, the received token-rank pairs (source rank, source token; rank-major, tokens ascending) and
   * the rank's own send layout (tokens per destination rank, token-in-rank flags).
   */
  record Expected(int rows, byte[] recvX, float[] recvScales, float[] recvWeights, int[] slotCounts, int pairs,
      int[] pairSrc, int[] pairToken, int[] numTokensPerRank, byte[] isTokenInRank) {}

  /** What a fused dispatch returns on every rank (an unfused one: the same without pair records). */
  static Expected[] dispatch(Workload wl) {
    NaiveReference ref = wl.ref;
    int ranks = wl.ranks();
    RowBuffer[] x = wl.xs();
    Expected[] out = new Expected[ranks];
    for (int d = 0; d < ranks; d++) {
      RowBuffer recv = ref.received(d, x);
      // the pairs d receives, rank-major, tokens ascending; and d's own pairs as a source
      List<int[]> pairs = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        for (int t = 0; t < wl.tokens[r]; t++) {
          for (int dest : ref.destinations(r, t)) if (dest == d) pairs.add(new int[] {r, t});
        }
      }
      int[] perRank = new int[ranks];
      byte[] inRank = new byte[wl.tokens[d] * ranks];
      for (int t = 0; t < wl.tokens[d]; t++) {
        for (int dest : ref.destinations(d, t)) {
          perRank[dest]++;
          inRank[t * ranks + dest] = 1;
        }
      }
      out[d] = new Expected(recv.rows(), bytes(recv),
          recv.scales() == null ? new float[0] : recv.scales().toArray(ValueLayout.JAVA_FLOAT),
          ref.receivedWeights(d, wl.w), ref.slotCounts(d), pairs.size(),
          pairs.stream().mapToInt(p -> p[0]).toArray(), pairs.stream().mapToInt(p -> p[1]).toArray(), perRank, inRank);
    }
    return out;
  }

  /** What combine returns on every rank, as bytes of the combine dtype, for the workload's expert outputs. */
  static byte[][] combine(Workload wl) {
    RowBuffer[] y = wl.ys();
    byte[][] out = new byte[wl.ranks()][];
    for (int r = 0; r < out.length; r++) out[r] = bytes(wl.ref.combined(r, wl.w[r], y, wl.outType));
    return out;
  }

  static byte[] bytes(RowBuffer b) {
    return b.segment().asSlice(b.offset(), b.byteSize()).toArray(ValueLayout.JAVA_BYTE);
  }

  /** {@code rows x hidden} random values of {@code dtype} ({@link Workload#fill}) as raw bytes. */
  static byte[] randomRows(SplittableRandom rnd, int rows, int hidden, DType dtype) {
    byte[] b = new byte[Math.toIntExact((long) rows * hidden * dtype.bytes())];
    MemorySegment scales = dtype.hasScales() ? MemorySegment.ofArray(new float[rows * (hidden / DType.FP8_SCALE_BLOCK)]) : null;
    Workload.fill(new RowBuffer(MemorySegment.ofArray(b), 0, rows, hidden, dtype, scales), rnd);
    return b;
  }
}
