package io.moeyard.placement.eplb;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.Placement;
import java.io.InputStream;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class EplbTest {

  @Test
  void readmeExampleGivesExactlyEplbsPhy2log() {
    double[][] weight = {
      {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
      {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}
    };
    Eplb.Result r = Eplb.rebalanceDetailed(weight, 16, 4, 2, 8);
    int[][] expected = {
      {5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
      {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}
    };
    assertArrayEquals(expected[0], r.phy2log()[0]);
    assertArrayEquals(expected[1], r.phy2log()[1]);
    // The logcnt and log2phy EPLB returns for that example, derived by hand from phy2log/phyrank.
    assertArrayEquals(new int[] {1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}, r.logcnt()[0]);
    int[][][] log2phy = r.log2phy();
    assertArrayEquals(new int[] {0, 2}, log2phy[0][5]);
    assertArrayEquals(new int[] {12, -1}, log2phy[0][0]);
  }

  /**
   * 120 cases produced by running DeepSeek's eplb.py itself (see the resource's "source" and
   * "ties" notes): global and hierarchical policies, with and without redundancy, with distinct
   * weights (against the unmodified code) and with many ties (against its stable-sort order).
   */
  @Test
  void matchesEplbPyOnRecordedCases() throws Exception {
    JsonNode doc;
    try (InputStream in = EplbTest.class.getResourceAsStream("/eplb-reference-cases.json")) {
      doc = new ObjectMapper().readTree(in);
    }
    ObjectMapper m = new ObjectMapper();
    int i = 0, withTies = 0;
    for (JsonNode c : doc.get("cases")) {
      double[][] w = m.convertValue(c.get("weight"), double[][].class);
      String ctx = "case " + i++ + ": replicas=" + c.get("replicas") + " groups=" + c.get("groups") + " nodes=" + c.get("nodes")
          + " gpus=" + c.get("gpus") + " weight=" + c.get("weight");
      Eplb.Result r = Eplb.rebalanceDetailed(w, c.get("replicas").asInt(), c.get("groups").asInt(), c.get("nodes").asInt(),
          c.get("gpus").asInt());
      assertArrayEquals(m.convertValue(c.get("phy2log"), int[][].class), r.phy2log(), ctx);
      assertArrayEquals(m.convertValue(c.get("logcnt"), int[][].class), r.logcnt(), ctx);
      if (c.get("ties").asBoolean()) {
        withTies++;
        assertArrayEquals(m.convertValue(c.get("log2phy"), int[][][].class), r.log2phy(), ctx);
      }
    }
    assertEquals(120, i);
    assertEquals(60, withTies);
  }

  @Test
  void globalPolicyWhenGroupsDoNotDivideNodes() {
    // 4 experts, 6 slots, 1 group, 2 nodes, 2 GPUs -> global policy.
    // replicate: loads 10,6,3,1 -> +1 to e0 (10/1), then e1 (6 > 5) ; per-replica 5,5,6,3,1,... wait
    // phys: [0,1,2,3,0,1] with per-replica loads [5,3,3,1,5,3].
    // sort desc (stable): slot0(5), slot4(5), slot1(3), slot2(3), slot5(3), slot3(1)
    // packs (3 items each): s0->P0(5), s4->P1(5), s1->P0(8), s2->P1(8), s5->P0(11), s3->P1(9)
    // GPU0 slots: ranks s0=0, s1=1, s5=2 -> experts [0,1,1]; GPU1: s4=0, s2=1, s3=2 -> [0,2,3]
    double[][] w = {{10, 6, 3, 1}};
    Eplb.Result r = Eplb.rebalanceDetailed(w, 6, 1, 2, 2);
    assertArrayEquals(new int[] {0, 1, 1, 0, 2, 3}, r.phy2log()[0]);
    assertArrayEquals(new int[] {2, 2, 1, 1}, r.logcnt()[0]);
  }

  @Test
  void replicationTieGoesToLowestExpertAndOneSlotPerGpuKeepsOrder() {
    // Equal loads: every extra replica goes to the lowest id with the highest per-replica load.
    double[][] w = {{4, 4, 4, 4}};
    Eplb.Result r = Eplb.rebalanceDetailed(w, 8, 1, 1, 8);
    // 8 GPUs x 1 slot: packing is the identity, so phy2log is the replication order.
    assertArrayEquals(new int[] {0, 1, 2, 3, 0, 1, 2, 3}, r.phy2log()[0]);
  }

  @Test
  void hierarchicalPacksGroupsToNodes() {
    // 4 groups of 2 (sums 3, 70, 11, 15), 2 nodes, 4 GPUs, 8 slots (no redundancy).
    // Groups heaviest first: g1 -> node0, g3 -> node1, g2 -> node1, g0 -> node0 (node1 full).
    // Node 0 holds experts [2,3,0,1] (loads 30,40,1,2): 40 -> gpu0, 30 -> gpu1, 2 -> gpu1, 1 -> gpu0.
    // Node 1 holds experts [6,7,4,5] (loads 7,8,5,6): 8 -> gpu2, 7 -> gpu3, 6 -> gpu3, 5 -> gpu2.
    double[][] w = {{1, 2, 30, 40, 5, 6, 7, 8}};
    Eplb.Result r = Eplb.rebalanceDetailed(w, 8, 4, 2, 4);
    assertArrayEquals(new int[] {3, 0, 2, 1, 7, 4, 6, 5}, r.phy2log()[0]);
  }

  @Test
  void oneGroupPerNodeKeepsGroupOrder() {
    // EPLB's packing is the identity when each pack takes exactly one item: group g -> node g.
    double[][] w = {{1, 2, 30, 40}};
    Eplb.Result r = Eplb.rebalanceDetailed(w, 4, 2, 2, 4);
    assertArrayEquals(new int[] {0, 1, 2, 3}, r.phy2log()[0]);
  }

  @Test
  void propertiesOnRandomInputs() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 200; trial++) {
      int nodes = 1 + rnd.nextInt(3);
      int gpus = nodes * (1 + rnd.nextInt(4));
      int groups = 1 + rnd.nextInt(4);
      int experts = groups * (1 + rnd.nextInt(8));
      int slots = ((experts + gpus - 1) / gpus + rnd.nextInt(3)) * gpus;
      if (groups % nodes == 0 && slots / nodes < experts / nodes) continue;
      int layers = 1 + rnd.nextInt(3);
      double[][] w = new double[layers][experts];
      for (double[] row : w) for (int e = 0; e < experts; e++) row[e] = rnd.nextInt(1000);
      String ctx = seed + " trial=" + trial + " E=" + experts + " P=" + slots + " groups=" + groups
          + " nodes=" + nodes + " gpus=" + gpus + " w=" + Arrays.deepToString(w);
      Eplb.Result r = Eplb.rebalanceDetailed(w, slots, groups, nodes, gpus);
      Placement p = r.placement(); // validates: every expert has a slot, ids in range
      for (int l = 0; l < layers; l++) {
        int sum = 0;
        for (int c : r.logcnt()[l]) sum += c;
        assertEquals(slots, sum, ctx);
        assertArrayEquals(p.logcnt()[l], r.logcnt()[l], ctx);
        int[] perGpu = new int[gpus];
        for (int s = 0; s < slots; s++) perGpu[p.gpuOfSlot(s)]++;
        for (int c : perGpu) assertEquals(slots / gpus, c, ctx);
        // Greedy LPT bound: max GPU load <= mean + heaviest replica.
        double[] gpuLoad = new double[gpus];
        double heaviest = 0, total = 0;
        for (int s = 0; s < slots; s++) {
          int e = r.phy2log()[l][s];
          double v = w[l][e] / r.logcnt()[l][e];
          gpuLoad[p.gpuOfSlot(s)] += v;
          heaviest = Math.max(heaviest, v);
          total += v;
        }
        double max = Arrays.stream(gpuLoad).max().orElseThrow();
        if (groups % nodes != 0 || nodes == 1) {
          assertTrue(max <= total / gpus + heaviest + 1e-6, ctx + " max=" + max);
        }
        // Replica ranks of each expert are 0..cnt-1.
        int[][] l2p = r.log2phy()[l];
        for (int e = 0; e < experts; e++) {
          for (int k = 0; k < r.logcnt()[l][e]; k++) assertEquals(e, r.phy2log()[l][l2p[e][k]], ctx);
        }
      }
    }
  }

  @Test
  void rejectsBadShapes() {
    double[][] w = {{1, 2, 3, 4}};
    assertThrows(IllegalArgumentException.class, () -> Eplb.rebalance(w, 6, 1, 1, 4));
    assertThrows(IllegalArgumentException.class, () -> Eplb.rebalance(w, 2, 1, 1, 2));
    assertThrows(IllegalArgumentException.class, () -> Eplb.rebalance(w, 4, 1, 3, 4));
  }
}
