package io.moeyard.placement.cost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.testkit.WireCases;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class WireRowsTest {

  @Test
  void handComputed() {
    // 4 ranks on 2 nodes, 2 slots each: rank 0 {0, 1}, rank 1 {2, 3}, rank 2 {0, 2}, rank 3 {1, 3}.
    Placement p = new Placement(4, 4, new int[][] {{0, 1, 2, 3, 0, 2, 1, 3}});
    Topology topo = new Topology(2, 2);
    // one token per rank (the trace's 5th token is beyond 4 ranks x 1 and not run), top-2
    int[][] perToken = {{0, 3}, {1, 2}, {0, 1}, {3, -1}, {0, 1}};
    int[] ids = new int[perToken.length * 2];
    for (int t = 0; t < perToken.length; t++) System.arraycopy(perToken[t], 0, ids, 2 * t, 2);
    RoutingTrace tr = new RoutingTrace("hand", perToken.length, 1, 2, 4, ids);
    WireRows w = WireRows.count(tr, 0, p, topo, 1);
    // rank 0: e0 own slot; e3 on node 0 at rank 1 (its only node-0 copy).
    // rank 1: e1 on node 0 at rank 0; e2 own slot.
    // rank 2: e0 own slot; e1 on node 1 at rank 3.
    // rank 3: e3 own slot.
    assertArrayEquals(new long[] {2, 2, 1, 2}, w.received());
    assertEquals(3, w.remote());
    assertEquals(0, w.remoteNode());
    assertEquals(2, w.receivedMax());
    assertEquals(7 / 4.0, w.receivedMean(), 1e-12);
  }

  @Test
  void equalsBruteForceOnRandomPlacements() {
    TestSeed base = TestSeed.fresh();
    for (int c = 0; c < 300; c++) {
      long seed = base.value() + c;
      String ctx = base + " case " + c;
      SplittableRandom rnd = new SplittableRandom(seed);
      Topology topo = WireCases.topology(rnd);
      int G = topo.worldSize(), L = 1 + rnd.nextInt(3), layer = rnd.nextInt(L);
      Placement p = WireCases.placement(rnd, L, G);
      int perRank = rnd.nextInt(6);
      RoutingTrace tr = WireCases.trace(rnd, perRank * G + rnd.nextInt(5) + 1, L, p.experts());
      WireRows got = WireRows.count(tr, layer, p, topo, perRank);

      long[] received = new long[G];
      long remote = 0, remoteNode = 0, selections = 0;
      int spr = p.slotsPerGpu();
      for (int i = 0; i < perRank * G; i++) {
        int r = i / perRank, t = i % perRank;
        for (int k = 0; k < tr.topk(); k++) {
          int e = tr.expert(i, layer, k);
          if (e < 0) continue;
          selections++;
          int d = WireCases.ruleSlot(p.phy2log()[layer], topo, r, t, e) / spr;
          received[d]++;
          if (d != r) remote++;
          if (topo.nodeOf(d) != topo.nodeOf(r)) remoteNode++;
        }
      }
      assertArrayEquals(received, got.received(), ctx);
      assertEquals(remote, got.remote(), ctx);
      assertEquals(remoteNode, got.remoteNode(), ctx);
      long max = 0;
      for (long v : received) max = Math.max(max, v);
      assertEquals(max, got.receivedMax(), ctx);
      assertEquals(selections / (double) G, got.receivedMean(), 1e-9, ctx);
      assertTrue(got.remoteNode() <= got.remote(), ctx);
    }
  }

  @Test
  void refusesWhatDoesNotFitNamingIt() {
    Placement p = new Placement(4, 2, new int[][] {{0, 1, 2, 3}, {3, 2, 1, 0}});
    int[] ids = new int[8 * 2];
    RoutingTrace tr = new RoutingTrace("t.npy", 8, 2, 1, 4, ids);
    Topology two = Topology.singleNode(2);
    assertTrue(assertThrows(IllegalArgumentException.class, () -> WireRows.count(tr, 0, p, two, 5)).getMessage()
        .contains("2 ranks x 5 tokens"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> WireRows.count(tr, 2, p, two, 1)).getMessage()
        .contains("layer 2"));
    assertTrue(assertThrows(IllegalArgumentException.class, () -> WireRows.count(tr, 0, p, Topology.singleNode(4), 1))
        .getMessage().contains("4 ranks"));
    RoutingTrace five = new RoutingTrace("five.npy", 8, 2, 1, 5, ids);
    assertTrue(assertThrows(IllegalArgumentException.class, () -> WireRows.count(five, 0, p, two, 1)).getMessage()
        .contains("5 experts"));
    Placement oneLayer = new Placement(4, 2, new int[][] {{0, 1, 2, 3}});
    assertTrue(assertThrows(IllegalArgumentException.class, () -> WireRows.count(tr, 0, oneLayer, two, 1)).getMessage()
        .contains("1 layers"));
  }
}
