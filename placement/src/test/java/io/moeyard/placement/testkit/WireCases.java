package io.moeyard.placement.testkit;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.testkit.NaiveReference;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Random placements and traces for the tests that tie placement to the data path, and the replica
 * rule of the test kit's naive reference, independent of {@code ExpertMap}'s code. Seeds come from
 * {@link io.moeyard.engine.testkit.TestSeed}.
 */
public final class WireCases {
  private WireCases() {}

  /** A world of 1-8 ranks on a divisor of them as nodes. */
  public static Topology topology(SplittableRandom rnd) {
    int ranks = 1 + rnd.nextInt(8);
    int nodes;
    do nodes = 1 + rnd.nextInt(ranks);
    while (ranks % nodes != 0);
    return new Topology(nodes, ranks / nodes);
  }

  /** Every expert once, the remaining slots random experts (replicas), in random slots. */
  public static Placement placement(SplittableRandom rnd, int layers, int gpus) {
    int spg = 1 + rnd.nextInt(4);
    int slots = gpus * spg;
    int experts = 1 + rnd.nextInt(slots);
    int[][] phy2log = new int[layers][slots];
    for (int[] row : phy2log) {
      for (int p = 0; p < slots; p++) row[p] = p < experts ? p : rnd.nextInt(experts);
      for (int p = slots - 1; p > 0; p--) {
        int q = rnd.nextInt(p + 1), v = row[p];
        row[p] = row[q];
        row[q] = v;
      }
    }
    return new Placement(experts, gpus, phy2log);
  }

  /** Distinct experts per token and layer, some -1. */
  public static RoutingTrace trace(SplittableRandom rnd, int tokens, int layers, int experts) {
    int topk = 1 + rnd.nextInt(Math.min(experts, 4));
    int[] ids = new int[tokens * layers * topk];
    for (int i = 0; i < tokens * layers; i++) {
      for (int k = 0; k < topk; k++) {
        int e;
        boolean dup;
        do {
          e = rnd.nextInt(8) == 0 ? -1 : rnd.nextInt(experts);
          dup = false;
          for (int j = 0; j < k; j++) dup |= e >= 0 && ids[i * topk + j] == e;
        } while (dup);
        ids[i * topk + k] = e;
      }
    }
    return new RoutingTrace("random", tokens, layers, topk, experts, ids);
  }

  /** The replica rule, from the test kit's naive reference (not {@code ExpertMap}'s code). */
  public static int ruleSlot(int[] phy2log, Topology topology, int r, int t, int e) {
    int experts = Arrays.stream(phy2log).max().orElse(-1) + 1;
    return NaiveReference.chooseSlot(ExpertMap.of(topology, experts, phy2log), r, t, e);
  }
}
