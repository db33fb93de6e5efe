package io.moeyard.placement.ilp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class LocalityReplicasTest {
  static final long GPU_W = CpSatTuning.defaults().gpuWeight(), NODE_W = CpSatTuning.defaults().nodeWeight();

  /** Transitions from a previous layer: {@code mass[e]} tokens end at expert e, from expert 0. */
  static PairCounts into(long[] mass) {
    int n = mass.length;
    int[] from = new int[n], to = new int[n];
    for (int e = 0; e < n; e++) to[e] = e;
    return new PairCounts(from, to, mass.clone());
  }

  /** Transitions from a previous layer: expert {@code e} here gets {@code tokens} from each of {@code partners} experts there. */
  static PairCounts spread(int e, int partners, long tokens, PairCounts others) {
    int n = partners + (others == null ? 0 : others.size());
    int[] from = new int[n], to = new int[n];
    long[] c = new long[n];
    for (int i = 0; i < partners; i++) {
      from[i] = i;
      to[i] = e;
      c[i] = tokens;
    }
    for (int i = partners; i < n; i++) {
      from[i] = others.from()[i - partners];
      to[i] = others.to()[i - partners];
      c[i] = others.count()[i - partners];
    }
    return new PairCounts(from, to, c);
  }

  static double maxLoad(int[] row, int gpus, double[] load) {
    double m = 0;
    for (double v : PlanMetrics.gpuLoads(row, gpus, load)) m = Math.max(m, v);
    return m;
  }

  @Test
  void aLoosePackingGivesTheExpertWithTheWidestPartnersOneCopyPerGpu() {
    // 16 equally loaded experts, 8 GPUs on 4 nodes, 40 slots (5 per GPU). The warm row fills EPLB's
    // counts (3 copies for experts 0-7, 2 for 8-15) in order, so its GPUs carry 1.67 to 2.5: loose.
    // Expert 5 gets 25 tokens from each of 40 experts of the previous layer: copy k gathers partners
    // 5k-4..5k on its GPU (125 tokens x GPU weight 1, up to 8 copies) and each copy up to one per
    // node a quarter of the 35 beyond the first 5 (x node weight 2: 437.5). The others have one
    // partner, so a copy of theirs is worth nothing: expert 5 gets one copy per GPU, and the rest
    // go to balance.
    int e = 16, g = 8, p = 40;
    int[] warm = new int[p];
    int k = 0;
    for (int x = 0; x < e; x++) for (int r = 0; r < (x < 8 ? 3 : 2); r++) warm[k++] = x;
    double[] load = new double[e];
    java.util.Arrays.fill(load, 1);
    long[] single = new long[e];
    java.util.Arrays.fill(single, 10);
    single[5] = 0;
    PairCounts prev = spread(5, 40, 25, into(single));
    int[] row = LocalityReplicas.row(new double[][] {load}, warm, new PairCounts[] {prev, null}, new boolean[] {true, false},
        g, 4, GPU_W, NODE_W);
    assertNotNull(row);
    int[] c = CpSatPlanner.countsOf(row, e);
    assertEquals(g, c[5], "copies of the expert with the widest partners");
    // the 17 copies worth nothing go by load per copy: every other expert gets a second, the first two a third
    for (int x = 0; x < e; x++) assertEquals(x == 5 ? g : x < 2 ? 3 : 2, c[x], "copies of expert " + x);
    assertTrue(maxLoad(row, g, load) <= (1 - LocalityReplicas.ROOM) * maxLoad(warm, g, load) + 1e-9);
    // the same counts with one partner each are worth nothing more than the warm start's
    assertNull(LocalityReplicas.row(new double[][] {load}, warm, new PairCounts[] {into(single), null},
        new boolean[] {true, false}, g, 4, GPU_W, NODE_W));
  }

  @Test
  void aTightPackingKeepsTheWarmCounts() {
    // equal loads, 3 copies for experts 0-7 and 2 for 8-15, packed 3 thirds + 2 halves per GPU:
    // every GPU carries exactly the mean, so no packing leaves 2% of it free, however much a copy
    // of expert 5 is worth
    int e = 16, g = 8, p = 40;
    int[] warm = new int[p];
    int[] thirds = new int[24], halves = new int[16];
    for (int i = 0; i < 24; i++) thirds[i] = i % 8;
    for (int i = 0; i < 16; i++) halves[i] = 8 + i % 8;
    for (int gpu = 0; gpu < g; gpu++) {
      for (int j = 0; j < 3; j++) warm[gpu * 5 + j] = thirds[gpu * 3 + j];
      for (int j = 0; j < 2; j++) warm[gpu * 5 + 3 + j] = halves[gpu * 2 + j];
    }
    double[] load = new double[e];
    java.util.Arrays.fill(load, 1);
    for (double v : PlanMetrics.gpuLoads(warm, g, load)) assertEquals(2.0, v, 1e-12);
    long[] single = new long[e];
    java.util.Arrays.fill(single, 10);
    PairCounts prev = spread(5, 40, 25, into(single));
    assertNull(LocalityReplicas.row(new double[][] {load}, warm, new PairCounts[] {prev, null}, new boolean[] {true, false},
        g, 4, GPU_W, NODE_W));
    // one node and no GPU weight: a copy is worth nothing, however loose the packing
    int[] loose = new int[p];
    int k = 0;
    for (int x = 0; x < e; x++) for (int r = 0; r < (x < 8 ? 3 : 2); r++) loose[k++] = x;
    assertNull(LocalityReplicas.row(new double[][] {load}, loose, new PairCounts[] {prev, null}, new boolean[] {true, false},
        g, 1, 0, NODE_W));
  }

  @Test
  void anExpertNeverGetsMoreCopiesThanGpus() {
    // 3 experts, 2 GPUs (one node), 6 slots. Expert 0 needs both GPUs for balance; expert 1's
    // second copy is worth something (10 partners, 3 per GPU); the last copy is worth nothing and
    // goes by load per copy, where expert 0 leads but already has one copy per GPU: expert 2 gets it.
    int[] warm = {0, 1, 2, 0, 2, 2};
    double[] load = {10, 1, 1};
    PairCounts prev = spread(1, 10, 10, null);
    int[] row = LocalityReplicas.row(new double[][] {load}, warm, new PairCounts[] {prev, null}, new boolean[] {true, false}, 2,
        1, GPU_W, NODE_W);
    assertNotNull(row);
    assertArrayEquals(new int[] {2, 2, 2}, CpSatPlanner.countsOf(row, 3));
  }

  @Test
  void randomLayersKeepEveryWorkloadsMaxLoadAndEveryExpert() {
    TestSeed seed0 = TestSeed.fresh();
    int changed = 0;
    for (int trial = 0; trial < 2000; trial++) {
      SplittableRandom rnd = new SplittableRandom(seed0.value() + trial);
      String ctx = seed0 + " trial " + trial;
      int nodes = 1 + rnd.nextInt(4), g = nodes * (1 + rnd.nextInt(4)), e = 2 + rnd.nextInt(40);
      int p = g * Math.max(1, (e + g - 1) / g + rnd.nextInt(3));
      int w = 1 + rnd.nextInt(3);
      double[][] loads = new double[w][e];
      for (double[] l : loads) {
        double skew = rnd.nextDouble() * 1.5;
        for (int x = 0; x < e; x++) l[x] = rnd.nextInt(5) == 0 ? 0 : Math.pow(1 + rnd.nextInt(e), -skew) * 1000;
      }
      // a random warm row: every expert once, the rest random, slots shuffled (loose or tight by chance)
      int[] warm = new int[p];
      for (int i = 0; i < p; i++) warm[i] = i < e ? i : rnd.nextInt(e);
      for (int i = p - 1; i > 0; i--) {
        int j = rnd.nextInt(i + 1), t = warm[i];
        warm[i] = warm[j];
        warm[j] = t;
      }
      PairCounts prev = randomPairs(rnd, e), next = rnd.nextBoolean() ? randomPairs(rnd, e) : null;
      int[] row = LocalityReplicas.row(loads, warm, new PairCounts[] {prev, next}, new boolean[] {true, false}, g, nodes, GPU_W,
          NODE_W);
      if (row == null) continue;
      changed++;
      assertEquals(p, row.length, ctx);
      int[] c = CpSatPlanner.countsOf(row, e);
      var worth = new LocalityReplicas.Worth(e, new PairCounts[] {prev, next}, new boolean[] {true, false}, p / g, g, nodes, GPU_W, NODE_W);
      assertTrue(worth.of(c) >= LocalityReplicas.MIN_GAIN * worth.of(CpSatPlanner.countsOf(warm, e)),
          ctx + ": worth " + worth.of(c) + " against the warm row's " + worth.of(CpSatPlanner.countsOf(warm, e)));
      for (int x = 0; x < e; x++) assertTrue(c[x] >= 1 && c[x] <= g, ctx + ": expert " + x + " has " + c[x] + " copies");
      for (double[] l : loads) {
        assertTrue(maxLoad(row, g, l) <= maxLoad(warm, g, l) * (1 - LocalityReplicas.ROOM) + 1e-9,
            ctx + ": max GPU load " + maxLoad(row, g, l) + " leaves less than the room asked of the warm row's " + maxLoad(warm, g, l));
      }
    }
    assertTrue(changed > 50, "only " + changed + " of 2000 random layers changed counts, " + seed0);
  }

  /** Random transitions between two layers of {@code e} experts: a third of the pairs, heavy-tailed counts. */
  private static PairCounts randomPairs(SplittableRandom rnd, int e) {
    int n = 0;
    int[] from = new int[e * e], to = new int[e * e];
    long[] c = new long[e * e];
    for (int a = 0; a < e; a++) {
      for (int b = 0; b < e; b++) {
        if (rnd.nextInt(3) != 0) continue;
        from[n] = a;
        to[n] = b;
        c[n++] = (long) Math.pow(1 + rnd.nextInt(1000), 1.5);
      }
    }
    return new PairCounts(java.util.Arrays.copyOf(from, n), java.util.Arrays.copyOf(to, n), java.util.Arrays.copyOf(c, n));
  }

  @Test
  void thePlannerMovesReplicasOnlyWhereBalanceAllows() {
    // a small version of the DeepSeek-V3-shaped case: 64 experts top-6, tokens tied to one of 16
    // topics with probability 0.65, flat popularity, 16 GPUs on 8 nodes, 80 slots; the warm start
    // fills EPLB's counts in expert order, loose as hierarchical EPLB's packings are
    CpSatPlanner.loadNatives();
    TestSeed seed0 = TestSeed.fresh();
    int moved = 0;
    int e = 64, g = 16, n = 8, p = 80, layers = 4;
    for (int trial = 0; trial < 2; trial++) {
      long seed = seed0.value() + trial;
      String ctx = seed0 + " trial " + trial;
      int[][][] tr = TraceBuilder.synthetic(seed, 1500, layers, e, 6, 16, 0.65, 0.4);
      PlacementProblem prob = TraceBuilder.problem(List.<int[][][]>of(tr), layers, e, g, n, p, true);
      int[][] rows = new int[layers][p];
      for (int l = 0; l < layers; l++) {
        int[] cnt = ReplicaGreedy.replicaCounts(new double[][] {prob.loads()[0][l]}, e, p);
        int k = 0;
        for (int x = 0; x < e; x++) for (int r = 0; r < cnt[x]; r++) rows[l][k++] = x;
      }
      Placement warm = new Placement(e, g, rows);
      for (boolean on : new boolean[] {true, false}) {
        PlanReport r = CpSatPlanner.plan(prob, warm, CpSatPlannerTest.opts(1.0, null), CpSatTuning.defaults().withLocalityReplicas(on));
        CpSatPlannerTest.assertValid(prob, r.placement());
        assertTrue(CpSatPlannerTest.cost(prob, r.placement()) <= CpSatPlannerTest.cost(prob, warm), ctx);
        for (int l = 0; l < layers; l++) {
          double ours = PlanMetrics.balancedness(r.placement().phy2log()[l], g, prob.loads()[0][l]);
          double theirs = PlanMetrics.balancedness(rows[l], g, prob.loads()[0][l]);
          assertTrue(ours >= theirs / (1 + CpSatTuning.defaults().balanceSlack()) - 1e-4, ctx + " layer " + l);
          boolean same = java.util.Arrays.equals(CpSatPlanner.countsOf(r.placement().phy2log()[l], e), CpSatPlanner.countsOf(rows[l], e));
          if (!on) assertTrue(same, ctx + " layer " + l + ": counts changed with locality replicas off");
          else if (!same) moved++;
        }
      }
    }
    assertTrue(moved > 0, "no layer got locality replica counts, " + seed0);
  }
}
