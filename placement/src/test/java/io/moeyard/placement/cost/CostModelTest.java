package io.moeyard.placement.cost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import org.junit.jupiter.api.Test;

class CostModelTest {
  private static final double EPS = 1e-9;

  private static PlacementProblem problem(int slots, int nodes) {
    double[][][] loads = {{{10, 20, 30, 40}, {10, 20, 30, 40}}};
    PairCounts[] t = {new PairCounts(new int[] {0, 0, 3}, new int[] {2, 1, 3}, new long[] {5, 7, 9})};
    return new PlacementProblem(2, 4, 2, nodes, slots, loads, t, null);
  }

  @Test
  void trivialPlacementHandComputed() {
    Placement p = new Placement(4, 2, new int[][] {{0, 1, 2, 3}, {0, 1, 2, 3}});
    PlacementScore s = CostModel.score(problem(4, 2), p);
    assertArrayEquals(new double[] {30, 70}, s.layers()[0].gpuLoads()[0], EPS);
    assertEquals(50.0 / 70, s.meanBalancedness(), EPS);
    assertEquals(50.0 / 70, s.worstBalancedness(), EPS);
    assertEquals(140, s.sumMaxGpuLoad(), EPS);
    assertEquals(21, s.transitions(), EPS);
    // Only 0 -> 2 crosses: 0 on GPU 0, 2 on GPU 1; one GPU per node, so it crosses nodes too.
    assertEquals(5, s.crossGpu(), EPS);
    assertEquals(5, s.crossNode(), EPS);
  }

  @Test
  void replicasSplitLoadAndTransitionsUniformly() {
    // GPU 0: {0, 1, 3}, GPU 1: {2, 3, 3}; expert 3 has three replicas.
    int[] layer = {0, 1, 3, 2, 3, 3};
    Placement p = new Placement(4, 2, new int[][] {layer, layer});
    PlacementScore s = CostModel.score(problem(6, 1), p);
    assertArrayEquals(new double[] {10 + 20 + 40.0 / 3, 30 + 80.0 / 3}, s.layers()[1].gpuLoads()[0], EPS);
    assertEquals(50 / (30 + 80.0 / 3), s.meanBalancedness(), EPS);
    // 3 -> 3 stays on a GPU with probability (1/3)^2 + (2/3)^2 = 5/9: 9 * 4/9 = 4 cross.
    assertEquals(5 + 4, s.crossGpu(), EPS);
    assertEquals(0, s.crossNode(), EPS); // one node
  }

  @Test
  void nearestRuleCountsAPairLocalWhenSomeReplicasShareAGpu() {
    int[] layer = {0, 1, 3, 2, 3, 3}; // as above: 3 is on both GPUs
    Placement p = new Placement(4, 2, new int[][] {layer, layer});
    PlacementScore s = CostModel.score(problem(6, 1), p, ReplicaRule.NEAREST);
    assertEquals(5, s.crossGpu(), EPS); // 0 -> 2 crosses; 0 -> 1 and 3 -> 3 stay
    assertEquals(0, s.crossNode(), EPS);
  }

  /** NEAREST against the planner's own "some replica" definition, UNIFORM == NEAREST without replicas. */
  @Test
  void rulesAgainstBruteForceOnRandomPlacements() {
    TestSeed seed = TestSeed.fresh();
    java.util.SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 200; trial++) {
      int gpus = 1 + rnd.nextInt(6), nodes = 1 + rnd.nextInt(gpus), experts = 2 + rnd.nextInt(10), layers = 2 + rnd.nextInt(3);
      while (gpus % nodes != 0) nodes--;
      boolean replicas = rnd.nextBoolean();
      int perGpu = (experts + gpus - 1) / gpus + (replicas ? 1 + rnd.nextInt(3) : 0);
      int slots = perGpu * gpus;
      int[][] rows = new int[layers][slots];
      for (int[] row : rows) {
        for (int i = 0; i < slots; i++) row[i] = i < experts ? i : rnd.nextInt(experts);
        for (int i = slots - 1; i > 0; i--) {
          int j = rnd.nextInt(i + 1), t = row[i];
          row[i] = row[j];
          row[j] = t;
        }
      }
      PairCounts[] t = new PairCounts[layers - 1];
      for (int l = 0; l + 1 < layers; l++) {
        int n = 1 + rnd.nextInt(20);
        int[] a = new int[n], b = new int[n];
        long[] c = new long[n];
        for (int i = 0; i < n; i++) {
          a[i] = rnd.nextInt(experts);
          b[i] = rnd.nextInt(experts);
          c[i] = 1 + rnd.nextInt(100);
        }
        t[l] = new PairCounts(a, b, c);
      }
      double[][][] loads = new double[1][layers][experts];
      PlacementProblem pr = new PlacementProblem(layers, experts, gpus, nodes, slots, loads, t, null);
      Placement p = new Placement(experts, gpus, rows);
      var some = io.moeyard.placement.ilp.PlanMetrics.transitions(p, t, nodes);
      PlacementScore near = CostModel.score(pr, p, ReplicaRule.NEAREST);
      String ctx = seed + " trial " + trial;
      assertEquals(some.crossGpu(), near.crossGpu(), EPS, ctx);
      assertEquals(some.crossNode(), near.crossNode(), EPS, ctx);
      if (!replicas && slots == experts) {
        PlacementScore uni = CostModel.score(pr, p, ReplicaRule.UNIFORM);
        assertEquals(near.crossGpu(), uni.crossGpu(), EPS, ctx);
        assertEquals(near.crossNode(), uni.crossNode(), EPS, ctx);
      }
    }
  }

  @Test
  void robustScoreTakesTheWorstWorkload() {
    double[][][] loads = {{{10, 10, 10, 10}}, {{40, 0, 0, 0}}};
    PlacementProblem pr = new PlacementProblem(1, 4, 2, 1, 4, loads, new PairCounts[0], null);
    Placement p = new Placement(4, 2, new int[][] {{0, 1, 2, 3}});
    PlacementScore s = CostModel.score(pr, p);
    assertEquals(1.0, s.layers()[0].balancedness()[0], EPS);
    assertEquals(0.5, s.layers()[0].balancedness()[1], EPS);
    assertEquals(0.75, s.meanBalancedness(), EPS);
    assertEquals(0.5, s.worstBalancedness(), EPS);
    assertEquals(40, s.sumMaxGpuLoad(), EPS);
  }

  @Test
  void idleLayerIsBalanced() {
    assertEquals(1.0, CostModel.balancedness(new double[] {0, 0}), EPS);
  }
}
