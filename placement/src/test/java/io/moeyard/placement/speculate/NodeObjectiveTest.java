package io.moeyard.placement.speculate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.speculate.SpeculativeShuffler.Objective;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The node-aware objective: its score and assignment against brute force, and what it changes. */
class NodeObjectiveTest {
  /** A small random problem: a model, a placement (with replicas sometimes), one layer's inputs. */
  private record Problem(long seed, AffinityModel model, Placement placement, int nodes, int layer, int tokens, int topk,
      int[] prev1, int[] prev2, int[] current, int[] after, double tolerance) {
    static Problem random(long seed, int maxTokens) {
      SplittableRandom rnd = new SplittableRandom(seed);
      int L = 2 + rnd.nextInt(3), K = 1 + rnd.nextInt(3), E = K + 1 + rnd.nextInt(8);
      int[][] shapes = {{2, 2}, {4, 2}, {4, 4}, {6, 3}, {2, 1}, {4, 1}};
      int[] shape = shapes[rnd.nextInt(shapes.length)];
      int G = shape[0], N = shape[1];
      int slots = ((E + G - 1) / G) * G + G * rnd.nextInt(2);
      RoutingTrace train = RandomTraces.routing(rnd, "train", 20 + rnd.nextInt(100), L, K, E);
      Placement p = ExpertGrouping.plan(List.of(train), G, slots, 0.5 + 0.5 * rnd.nextDouble(), null);
      int T = rnd.nextInt(maxTokens + 1);
      if (Math.pow(G, T) > 50_000) T = (int) (Math.log(50_000) / Math.log(G));
      RoutingTrace eval = RandomTraces.routing(rnd, "eval", Math.max(T, 1), L, K, E);
      int layer = 1 + rnd.nextInt(L - 1);
      int[] prev1 = new int[T * K], prev2 = layer >= 2 ? new int[T * K] : null;
      for (int t = 0; t < T; t++) {
        System.arraycopy(eval.ids(), (t * L + layer - 1) * K, prev1, t * K, K);
        if (prev2 != null) System.arraycopy(eval.ids(), (t * L + layer - 2) * K, prev2, t * K, K);
      }
      if (rnd.nextInt(4) == 0) Arrays.fill(prev1, 0, Math.min(prev1.length, K), -1); // a token that chose nothing
      int[] current = null;
      if (rnd.nextInt(5) > 0) {
        current = new int[T];
        for (int t = 0; t < T; t++) current[t] = rnd.nextInt(G);
      }
      int[] after = null;
      if (rnd.nextBoolean()) {
        after = new int[T];
        for (int t = 0; t < T; t++) after[t] = rnd.nextInt(G);
      }
      double[] tolerances = {0.1, 0.3, 1};
      return new Problem(seed, AffinityModel.learn(List.of(train)), p, N, layer, T, K, prev1, prev2, current, after,
          tolerances[rnd.nextInt(tolerances.length)]);
    }

    @Override
    public String toString() {
      return "seed=" + seed + " T=" + tokens + " K=" + topk + " E=" + placement.experts() + " G=" + placement.gpus() + " nodes=" + nodes
          + " slots=" + placement.slots() + " layer=" + layer + " tolerance=" + tolerance + " current=" + Arrays.toString(current) + " after=" + Arrays.toString(after);
    }
  }

  /**
   * The objective as its documentation states it, computed slot by slot: token t on rank r is
   * worth k * (mass of experts with a slot on r) - weight * (2 * expected other nodes + forward in
   * + forward on).
   */
  private static double[] referenceScore(Problem pr, double weight) {
    ExpertPredictor predictor = new ExpertPredictor(pr.model());
    int E = pr.placement().experts(), G = pr.placement().gpus(), N = pr.nodes(), T = pr.tokens(), K = pr.topk();
    int[] phy2log = pr.placement().phy2log()[pr.layer()];
    int perRank = phy2log.length / G, perNode = G / N;
    double[] score = new double[T * G];
    double[] p = new double[E];
    for (int t = 0; t < T; t++) {
      int[] s1 = new int[K], s2 = new int[K];
      int n1 = AffinityModel.distinct(pr.prev1(), t * K, K, s1);
      int n2 = pr.prev2() == null ? 0 : AffinityModel.distinct(pr.prev2(), t * K, K, s2);
      predictor.scores(pr.layer(), s1, n1, s2, n2, p);
      for (int r = 0; r < G; r++) {
        double local = 0;
        for (int e = 0; e < E; e++) {
          boolean here = false;
          for (int s = 0; s < phy2log.length; s++) here |= phy2log[s] == e && s / perRank == r;
          if (here) local += p[e];
        }
        if (N == 1) {
          score[t * G + r] = local;
          continue;
        }
        int n = r / perNode;
        double otherNodes = 0;
        for (int m = 0; m < N; m++) {
          if (m == n) continue;
          double mass = 0;
          for (int e = 0; e < E; e++) {
            int all = 0, onN = 0, onM = 0;
            for (int s = 0; s < phy2log.length; s++) {
              if (phy2log[s] != e) continue;
              all++;
              if (s / perRank / perNode == n) onN++;
              if (s / perRank / perNode == m) onM++;
            }
            if (onN == 0) mass += p[e] * onM / all;
          }
          otherNodes += 1 - Math.pow(1 - mass, n1);
        }
        boolean forwardIn = pr.current() != null && pr.current()[t] / perNode != n;
        boolean forwardOn = pr.after() != null && pr.after()[t] / perNode != n;
        score[t * G + r] = n1 * local - weight * (2 * otherNodes + (forwardIn ? 1 : 0) + (forwardOn ? 1 : 0));
      }
    }
    return score;
  }

  private static double total(double[] score, int[] rank, int G) {
    double s = 0;
    for (int t = 0; t < rank.length; t++) s += score[t * G + rank[t]];
    return s;
  }

  /** The best total over every assignment whose rank counts lie in [min, max]. */
  private static double bruteForce(double[] score, int T, int G, int min, int max) {
    int[] rank = new int[T];
    int[] count = new int[G];
    double best = Double.NEGATIVE_INFINITY;
    while (true) {
      Arrays.fill(count, 0);
      for (int r : rank) count[r]++;
      boolean ok = true;
      for (int c : count) ok &= c >= min && c <= max;
      if (ok) best = Math.max(best, total(score, rank, G));
      int i = 0;
      while (i < T && ++rank[i] == G) rank[i++] = 0;
      if (i == T) return best;
    }
  }

  @Test
  void theAssignmentIsOptimalForTheDocumentedObjective() {
    TestSeed base = TestSeed.fresh();
    int checked = 0;
    for (int i = 0; i < 150; i++) {
      Problem pr = Problem.random(base.value() + i, 7);
      SplittableRandom rnd = new SplittableRandom(pr.seed() ^ 0x5DEECE66DL);
      double weight = rnd.nextBoolean() ? SpeculativeShuffler.NODE_ROW_WEIGHT : 0.05 + 20 * rnd.nextDouble();
      try {
        int G = pr.placement().gpus(), T = pr.tokens();
        SpeculativeShuffler s = new SpeculativeShuffler(new ExpertPredictor(pr.model()), pr.placement().phy2log(), G, pr.nodes(),
            Objective.NODES, weight, pr.tolerance());
        Shuffle got = s.next(pr.layer(), T, pr.topk(), pr.prev1(), pr.prev2(), pr.current(), pr.after());
        int min = CapacityAssignment.minTokens(T, G, pr.tolerance()), max = CapacityAssignment.maxTokens(T, G, pr.tolerance());
        int[] count = new int[G];
        for (int r : got.rank()) count[r]++;
        for (int r = 0; r < G; r++) assertTrue(count[r] >= min && count[r] <= max, "rank " + r + " holds " + count[r]);
        double[] ref = referenceScore(pr, weight);
        double best = bruteForce(ref, T, G, min, max);
        assertEquals(best, total(ref, got.rank(), G), 1e-9 * (1 + Math.abs(best)), "total of the assignment " + Arrays.toString(got.rank()));
        checked++;
      } catch (AssertionError | RuntimeException e) {
        throw new AssertionError(pr + " weight=" + weight + ": " + e.getMessage(), e);
      }
    }
    assertTrue(checked == 150);
  }

  @Test
  void withOneNodeEveryObjectiveGivesTheRankOnlyAssignments() {
    TestSeed base = TestSeed.fresh();
    for (int i = 0; i < 40; i++) {
      SplittableRandom rnd = new SplittableRandom(base.value() + i);
      int L = 1 + rnd.nextInt(5), K = 1 + rnd.nextInt(4), E = K + rnd.nextInt(14), G = 1 + rnd.nextInt(5);
      int slots = ((E + G - 1) / G) * G + G * rnd.nextInt(2);
      RoutingTrace train = RandomTraces.routing(rnd, "train", 1 + rnd.nextInt(200), L, K, E);
      RoutingTrace eval = RandomTraces.routing(rnd, "eval", 1 + rnd.nextInt(200), L, K, E);
      Placement p = ExpertGrouping.plan(List.of(train), G, slots, 0.9, null);
      AffinityModel m = AffinityModel.learn(List.of(train));
      Assignments today = new SpeculativeShuffler(m, p).assign(eval, null);
      for (Objective o : Objective.values()) {
        Assignments a = new SpeculativeShuffler(m, p, 1, o).assign(eval, null);
        assertArrayEquals(today.rank(), a.rank(), "seed " + (base.value() + i) + " objective " + o);
        assertArrayEquals(today.predicted(), a.predicted(), "seed " + (base.value() + i) + " objective " + o);
      }
      // the rank-only objective ignores nodes altogether
      if (G % 2 == 0) {
        Assignments ranks = new SpeculativeShuffler(m, p, 2, Objective.RANKS).assign(eval, null);
        assertArrayEquals(today.rank(), ranks.rank(), "seed " + (base.value() + i) + ": ranks objective on 2 nodes");
      }
    }
  }

  /**
   * 4 ranks in 2 nodes, two experts each; a token after experts {0, 1, 3} always chooses {4, 5, 2}:
   * two on rank 2 (node 1), one on rank 1 (node 0). From node 0, rank 2 holds most but costs a
   * forward across nodes, a row back to node 0 and, after this last layer, the way home; rank 1
   * leaves only node 1 to reach.
   */
  @Test
  void theRankObjectiveCrossesNodesWhereTheNodeObjectiveDoesNot() {
    int T = 40, L = 2, K = 3, E = 8;
    int[] ids = new int[T * L * K];
    for (int t = 0; t < T; t++) {
      System.arraycopy(new int[] {0, 1, 3}, 0, ids, (t * L) * K, K);
      System.arraycopy(new int[] {4, 5, 2}, 0, ids, (t * L + 1) * K, K);
    }
    RoutingTrace trace = new RoutingTrace("constructed", T, L, K, E, ids);
    AffinityModel m = AffinityModel.learn(List.of(trace));
    int[][] phy2log = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}};
    Placement p = new Placement(E, 4, phy2log);
    RoutingTrace eval = SpeculativeShufflerTest.slice(trace, 0, 4); // one token per rank
    double loose = 3; // capacities out of the way: each rank may take all four tokens
    Assignments ranks = new SpeculativeShuffler(m, phy2log, 4, 2, Objective.RANKS, loose).assign(eval, null);
    Assignments nodes = new SpeculativeShuffler(m, phy2log, 4, 2, Objective.NODES, loose).assign(eval, null);
    for (int t = 0; t < 4; t++) assertEquals(2, ranks.rank(t, 1), "rank objective, token " + t);
    assertArrayEquals(new int[] {1, 1, 2, 2}, new int[] {nodes.rank(0, 1), nodes.rank(1, 1), nodes.rank(2, 1), nodes.rank(3, 1)});
    SpeculationReport rr = SpeculationReport.measure(eval, p, ranks, 2, 2);
    SpeculationReport rn = SpeculationReport.measure(eval, p, nodes, 2, 2);
    // home: layer 0 nothing crosses (experts 0, 1, 3 on node 0) for tokens 0, 1 and one node each for
    // tokens 2, 3; layer 1 every token reaches the other node once: 2 + 4 dispatch rows, as many back
    assertEquals(6, rr.dispatchNodeRowsHome());
    assertEquals(12, rr.nodeRowsHome());
    // ranks: tokens 0, 1 forward to node 1 and back home after the last layer
    assertEquals(4, rr.forwardNodeRowsSpeculative());
    assertEquals(2 * 6 + 4, rr.nodeRowsSpeculative());
    assertEquals(0, rn.forwardNodeRowsSpeculative());
    assertEquals(12, rn.nodeRowsSpeculative());
    assertTrue(rr.localSpeculative() > rn.localSpeculative(), "the rank objective keeps more activations local");
  }

  @Test
  void nodesThatDoNotDivideTheRanksAreOneErrorNamingThem() {
    int[][] phy2log = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}};
    RoutingTrace t = new RoutingTrace("t", 1, 2, 1, 8, new int[] {0, 1});
    AffinityModel m = AffinityModel.learn(List.of(t));
    for (int nodes : new int[] {3, 0, -2, 16}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> new SpeculativeShuffler(m, phy2log, 8, nodes, Objective.NODES, SpeculativeShuffler.TOLERANCE));
      assertTrue(e.getMessage().contains("nodes " + nodes + " ") && e.getMessage().contains("8 ranks"), e.getMessage());
      Placement p = new Placement(8, 8, phy2log);
      Assignments home = Assignments.home(1, 2, 8);
      IllegalArgumentException r = assertThrows(IllegalArgumentException.class, () -> SpeculationReport.measure(t, p, home, nodes, 2));
      assertTrue(r.getMessage().contains("nodes " + nodes + " "), r.getMessage());
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Objective.parse("both"));
    assertTrue(e.getMessage().contains("both"), e.getMessage());
    assertEquals(Objective.NODES, Objective.parse("Nodes"));
    assertEquals(Objective.RANKS, Objective.defaultFor(1));
    assertEquals(Objective.NODES, Objective.defaultFor(2));
  }
}
