package io.moeyard.combine;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import java.util.SplittableRandom;

/** A random world, routing and payload, sized for tests; {@link #toString} says how to replay it. */
final class Scenario {
  final long seed;
  final Topology topology;
  final ExpertMap map;
  final int experts;
  final int topk;
  final int hidden;
  final DType dtype;
  final int[] tokens;
  final int[][] topkIdx;
  final float[][] topkWeights;

  private Scenario(long seed, Topology topology, ExpertMap map, int experts, int topk, int hidden, DType dtype,
      int[] tokens, int[][] topkIdx, float[][] topkWeights) {
    this.seed = seed;
    this.topology = topology;
    this.map = map;
    this.experts = experts;
    this.topk = topk;
    this.hidden = hidden;
    this.dtype = dtype;
    this.tokens = tokens;
    this.topkIdx = topkIdx;
    this.topkWeights = topkWeights;
  }

  /**
   * Ranks 1..8 on 1..2 nodes, 1..32 slots per rank, sometimes replicas, 0..maxTokens tokens per
   * rank (unequal, sometimes zero), top-k 1..8, some -1 entries, sometimes all tokens to one expert.
   */
  static Scenario random(long seed, int maxTokens) {
    SplittableRandom rnd = new SplittableRandom(seed);
    int ranks = 1 + rnd.nextInt(8);
    int nodes = ranks % 2 == 0 && rnd.nextBoolean() ? 2 : 1;
    Topology topo = new Topology(nodes, ranks / nodes);
    int spr = 1 + rnd.nextInt(rnd.nextBoolean() ? 4 : 32);
    int slots = spr * ranks;
    boolean replicas = slots > 1 && rnd.nextInt(3) == 0;
    int experts = replicas ? Math.max(1, slots - 1 - rnd.nextInt(Math.max(1, slots / 2))) : slots;
    ExpertMap map;
    if (replicas) {
      int[] p2l = new int[slots];
      for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : rnd.nextInt(experts);
      for (int i = slots - 1; i > 0; i--) { // shuffle so replicas land anywhere
        int j = rnd.nextInt(i + 1);
        int tmp = p2l[i]; p2l[i] = p2l[j]; p2l[j] = tmp;
      }
      map = ExpertMap.of(topo, experts, p2l);
    } else {
      map = ExpertMap.trivial(topo, experts);
    }
    int topk = 1 + rnd.nextInt(Math.min(8, experts));
    DType dtype = DType.values()[rnd.nextInt(DType.values().length)];
    int hidden = dtype == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(2)) : 1 + rnd.nextInt(96);
    boolean hot = rnd.nextInt(6) == 0; // everything to expert 0 (top-1 only can do that)
    int[] tokens = new int[ranks];
    int[][] idx = new int[ranks][];
    float[][] w = new float[ranks][];
    for (int r = 0; r < ranks; r++) {
      tokens[r] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(maxTokens + 1);
      idx[r] = new int[tokens[r] * topk];
      w[r] = new float[tokens[r] * topk];
      int[] perm = new int[experts];
      for (int e = 0; e < experts; e++) perm[e] = e;
      for (int t = 0; t < tokens[r]; t++) {
        for (int k = 0; k < topk; k++) { // partial Fisher-Yates: distinct experts per token
          int j = k + rnd.nextInt(experts - k);
          int tmp = perm[k]; perm[k] = perm[j]; perm[j] = tmp;
        }
        for (int k = 0; k < topk; k++) {
          int e = hot ? (k == 0 ? 0 : -1) : (rnd.nextInt(10) == 0 ? -1 : perm[k]);
          idx[r][t * topk + k] = e;
          w[r][t * topk + k] = (float) rnd.nextDouble(-1, 1);
        }
      }
    }
    return new Scenario(seed, topo, map, experts, topk, hidden, dtype, tokens, idx, w);
  }

  @Override
  public String toString() {
    return "seed=" + seed + " ranks=" + topology.worldSize() + " nodes=" + topology.nodes() + " experts=" + experts
        + " slots=" + map.slots() + " topk=" + topk + " hidden=" + hidden + " dtype=" + dtype.cliName()
        + " tokens=" + java.util.Arrays.toString(tokens);
  }
}
