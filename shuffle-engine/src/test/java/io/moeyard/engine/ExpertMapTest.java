package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ExpertMapTest {
  @Test
  void replicaRulePrefersOwnRankThenNodeThenRotates() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 300; trial++) {
      int nodes = 1 + rnd.nextInt(3);
      int local = 1 + rnd.nextInt(4);
      Topology topo = new Topology(nodes, local);
      int ranks = topo.worldSize();
      int spr = 1 + rnd.nextInt(4);
      int slots = ranks * spr;
      int experts = 1 + rnd.nextInt(slots);
      int[] p2l = new int[slots];
      for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : rnd.nextInt(experts);
      for (int i = slots - 1; i > 0; i--) {
        int j = rnd.nextInt(i + 1);
        int tmp = p2l[i]; p2l[i] = p2l[j]; p2l[j] = tmp;
      }
      ExpertMap map = ExpertMap.of(topo, experts, p2l);
      for (int r = 0; r < ranks; r++) {
        for (int t = 0; t < 20; t++) {
          int e = rnd.nextInt(experts);
          int chosen = map.chooseSlot(r, t, e);
          String ctx = seed + " trial " + trial + " rank " + r + " token " + t + " expert " + e;
          assertEquals(e, p2l[chosen], ctx);
          // brute force: the candidate tier and the rotation
          java.util.List<Integer> own = new java.util.ArrayList<>(), node = new java.util.ArrayList<>(), all = new java.util.ArrayList<>();
          for (int p = 0; p < slots; p++) {
            if (p2l[p] != e) continue;
            all.add(p);
            if (p / spr == r) own.add(p);
            if (topo.nodeOf(p / spr) == topo.nodeOf(r)) node.add(p);
          }
          java.util.List<Integer> tier = !own.isEmpty() ? own : !node.isEmpty() ? node : all;
          assertEquals(tier.get((r + t) % tier.size()), chosen, ctx);
        }
      }
    }
  }

  @Test
  void trivialMapAndErrors() {
    Topology topo = Topology.singleNode(4);
    ExpertMap m = ExpertMap.trivial(topo, 8);
    assertEquals(2, m.slotsPerRank());
    assertEquals(3, m.rankOfSlot(7));
    assertEquals(5, m.chooseSlot(0, 0, 5));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.trivial(topo, 6));
    assertTrue(e.getMessage().contains("experts (6) must be divisible by the world size (4)"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.of(topo, 3, new int[] {0, 1, 1, 1}));
    assertTrue(e.getMessage().contains("expert 2 has no physical slot"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.of(topo, 3, new int[] {0, 1, 2, 3}));
    assertTrue(e.getMessage().contains("slot 3 maps to expert 3"), e.getMessage());
  }
}
