package io.moeyard.placement.testkit;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
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

  /** Every expert once, the remaining slots random experts (replicas), in random slots: the kit's {@link Workload#randomMap} per layer. */
  public static Placement placement(SplittableRandom rnd, int layers, int gpus) {
    int spg = 1 + rnd.nextInt(4);
    int experts = 1 + rnd.nextInt(gpus * spg);
    int[][] phy2log = new int[layers][];
    for (int l = 0; l < layers; l++) phy2log[l] = Workload.randomMap(rnd, Topology.singleNode(gpus), spg, experts).physicalToLogical();
    return new Placement(experts, gpus, phy2log);
  }

  /** Distinct experts per token and layer, some -1: the kit's {@link Workload#randomRouting} over every (token, layer). */
  public static RoutingTrace trace(SplittableRandom rnd, int tokens, int layers, int experts) {
    int topk = 1 + rnd.nextInt(Math.min(experts, 4));
    return new RoutingTrace("random", tokens, layers, topk, experts, Workload.randomRouting(rnd, tokens * layers, experts, topk, 0.125));
  }

  /** The replica rule, from the test kit's naive reference (not {@code ExpertMap}'s code). */
  public static int ruleSlot(int[] phy2log, Topology topology, int r, int t, int e) {
    int experts = Arrays.stream(phy2log).max().orElse(-1) + 1;
    return NaiveReference.chooseSlot(ExpertMap.of(topology, experts, phy2log), r, t, e);
  }
}
