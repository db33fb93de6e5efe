package io.moeyard.placement.speculate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.SyntheticTrace;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SpeculativeShufflerTest {
  private record World(long seed, RoutingTrace train, RoutingTrace eval, Placement placement, AffinityModel model) {
    static World random(long seed) {
      SplittableRandom rnd = new SplittableRandom(seed);
      int L = 1 + rnd.nextInt(5), K = 1 + rnd.nextInt(4), E = K + rnd.nextInt(14), G = 1 + rnd.nextInt(4);
      int slots = ((E + G - 1) / G) * G + G * rnd.nextInt(2);
      RoutingTrace train = RandomTraces.routing(rnd, "train", 1 + rnd.nextInt(200), L, K, E);
      RoutingTrace eval = RandomTraces.routing(rnd, "eval", 1 + rnd.nextInt(200), L, K, E);
      Placement p = ExpertGrouping.plan(List.of(train), G, slots, 0.5 + 0.5 * rnd.nextDouble(), null);
      return new World(seed, train, eval, p, AffinityModel.learn(List.of(train)));
    }

    @Override
    public String toString() {
      return "seed=" + seed + " eval=[" + eval.tokens() + ", " + eval.layers() + ", " + eval.topk() + "] E=" + eval.experts()
          + " G=" + placement.gpus() + " slots=" + placement.slots();
    }
  }

  @Test
  void capacitiesHoldLayerZeroIsHomeAndAssignmentsAreCausal() {
    TestSeed base = TestSeed.fresh();
    for (int i = 0; i < 60; i++) {
      World w = World.random(base.value() + i);
      try {
        SpeculativeShuffler s = new SpeculativeShuffler(w.model(), w.placement());
        Assignments a = s.assign(w.eval(), null);
        int T = a.tokens(), L = a.layers(), G = a.gpus();
        int min = CapacityAssignment.minTokens(T, G, SpeculativeShuffler.TOLERANCE);
        int max = CapacityAssignment.maxTokens(T, G, SpeculativeShuffler.TOLERANCE);
        assertTrue(max <= Math.max(Math.floor(1.1 * T / G), Math.ceil((double) T / G)), "max " + max);
        for (int l = 0; l < L; l++) {
          int[] count = new int[G];
          for (int t = 0; t < T; t++) {
            if (l == 0) assertEquals(SpeculativeShuffler.home(t, T, G), a.rank(t, 0), "layer 0 is home");
            count[a.rank(t, l)]++;
          }
          for (int r = 0; r < G; r++) {
            assertTrue(count[r] >= min && count[r] <= max, "layer " + l + " rank " + r + " holds " + count[r] + ", bounds " + min + ".." + max);
          }
        }
        // Cutting the eval trace after layer l must not change layers 0..l.
        int cut = 1 + new SplittableRandom(w.seed()).nextInt(L);
        Assignments shorter = s.assign(RandomTraces.prefix(w.eval(), cut), null);
        for (int t = 0; t < T; t++) {
          for (int l = 0; l < cut; l++) assertEquals(a.rank(t, l), shorter.rank(t, l), "token " + t + " layer " + l + " cut at " + cut);
        }
        SpeculationReport r = SpeculationReport.measure(w.eval(), w.placement(), a, 2);
        assertTrue(r.localSpeculative() <= r.localBest() + 1e-12 && r.localHome() <= r.localBest() + 1e-12, r.toString());
        if (G == 1) assertEquals(r.activations() == 0 ? 0 : 1.0, r.localSpeculative(), 1e-12);
      } catch (AssertionError | RuntimeException e) {
        throw new AssertionError(w + ": " + e.getMessage(), e);
      }
    }
  }

  @Test
  void theShuffleIsAPermutationThatRestoresTokenOrder() {
    TestSeed base = TestSeed.fresh();
    for (int i = 0; i < 40; i++) {
      World w = World.random(base.value() + i);
      if (w.eval().layers() < 2) continue;
      RoutingTrace e = w.eval();
      int T = e.tokens(), K = e.topk(), L = e.layers();
      int[] prev = new int[T * K];
      for (int t = 0; t < T; t++) System.arraycopy(e.ids(), t * L * K, prev, t * K, K);
      Shuffle s = new SpeculativeShuffler(w.model(), w.placement()).next(1, T, K, prev, null, null);
      boolean[] seen = new boolean[T];
      for (int tok : s.order()) {
        assertTrue(!seen[tok], w + ": token " + tok + " twice");
        seen[tok] = true;
      }
      int[] pos = s.position();
      for (int t = 0; t < T; t++) assertEquals(t, s.order()[pos[t]], w.toString());
      for (int r = 0; r < w.placement().gpus(); r++) {
        for (int i2 = s.rankStart()[r]; i2 < s.rankStart()[r + 1]; i2++) assertEquals(r, s.rank()[s.order()[i2]], w.toString());
      }
    }
  }

  @Test
  void oneLayerTopOneAndOneGpu() {
    SplittableRandom rnd = new SplittableRandom(7);
    RoutingTrace oneLayer = RandomTraces.routing(rnd, "one", 50, 1, 3, 8);
    Placement p = ExpertGrouping.plan(List.of(oneLayer), 4, 8, 0.9, null);
    Assignments a = new SpeculativeShuffler(AffinityModel.learn(List.of(oneLayer)), p).assign(oneLayer, null);
    assertArrayEquals(Assignments.home(50, 1, 4).rank(), a.rank());

    RoutingTrace top1 = RandomTraces.routing(rnd, "top1", 80, 3, 1, 8);
    Placement p1 = ExpertGrouping.plan(List.of(top1), 1, 8, 0.9, null);
    Assignments a1 = new SpeculativeShuffler(AffinityModel.learn(List.of(top1)), p1).assign(top1, null);
    for (int v : a1.rank()) assertEquals(0, v);
    SpeculationReport r = SpeculationReport.measure(top1, p1, a1, 2);
    assertEquals(1.0, r.localSpeculative(), 1e-12);
    assertEquals(0, r.dispatchRowsSpeculative() + r.combineRowsSpeculative());
  }

  @Test
  void aTokenThatChoseNothingStillGetsARank() {
    int[] ids = {0, 1, -1, -1, 2, 3, 2, 3, -1, -1, -1, -1};
    RoutingTrace t = new RoutingTrace("gaps", 3, 2, 2, 4, ids);
    Placement p = new Placement(4, 2, new int[][] {{0, 1, 2, 3}, {0, 1, 2, 3}});
    Assignments a = new SpeculativeShuffler(AffinityModel.learn(List.of(t)), p).assign(t, null);
    int[] count = new int[2];
    for (int tok = 0; tok < 3; tok++) count[a.rank(tok, 1)]++;
    assertTrue(count[0] >= 1 && count[1] >= 1, java.util.Arrays.toString(count));
  }

  @Test
  void affinityMakesActivationsLocalOnASyntheticTrace() {
    RoutingTrace all = SyntheticTrace.generate(new SyntheticTrace.Spec(8, 32, 4, 3000, 0.4, 0.8, 3, 4));
    RoutingTrace train = slice(all, 0, 2000), eval = slice(all, 2000, 3000);
    Placement p = ExpertGrouping.plan(List.of(train), 4, 32, ExpertGrouping.MIN_BALANCE, null);
    Assignments a = new SpeculativeShuffler(AffinityModel.learn(List.of(train)), p).assign(eval, null);
    SpeculationReport r = SpeculationReport.measure(eval, p, a, 2);
    assertTrue(r.localSpeculative() >= 2 * r.localHome(), r.toString());
    assertTrue(r.maxOverMeanTokens() <= 1.1 + 1e-9, r.toString());
    assertTrue(r.bytesSpeculative() < r.bytesHome(), r.toString());
  }

  static RoutingTrace slice(RoutingTrace t, int from, int to) {
    int per = t.layers() * t.topk();
    int[] ids = java.util.Arrays.copyOfRange(t.ids(), from * per, to * per);
    return new RoutingTrace(t.name(), to - from, t.layers(), t.topk(), t.experts(), ids);
  }
}
