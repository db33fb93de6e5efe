package io.moeyard.placement.cost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.testkit.WireCases;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DispatchModelTest {

  @Test
  void dedupAndLocalReplicaHandComputed() {
    // GPU 0 {0, 1}, GPU 1 {2, 0}; one GPU per node. The trace lists t0, t2, t1, t3: GPU 0 holds
    // the first two (t0, t2), GPU 1 the last two (t1, t3).
    int[] layer = {0, 1, 2, 0};
    Placement p = new Placement(3, 2, new int[][] {layer, layer});
    int[][] perToken = {{0, 2}, {1, -1}, {0, 1}, {2, 0}};
    int[] ids = new int[4 * 2 * 2];
    for (int t = 0; t < 4; t++) {
      for (int l = 0; l < 2; l++) for (int k = 0; k < 2; k++) ids[(t * 2 + l) * 2 + k] = perToken[t][k];
    }
    RoutingTrace tr = new RoutingTrace("hand", 4, 2, 2, 3, ids);
    DispatchCost c = DispatchModel.replay(tr, p, new Network(2, 1, 1, 1, 1), null);
    // t0: e0 local on G0, e2 on G1. t1: e0's replica on G1, e1 on G0. t2: G0. t3: e2 and e0 both on G1 -> one row.
    assertArrayEquals(new long[] {2, 1}, c.layers()[0].rows()[0]);
    assertArrayEquals(new long[] {1, 2}, c.layers()[0].rows()[1]);
    assertEquals(0, c.intraBytes());
    assertEquals(4, c.interBytes()); // 2 per layer
    assertEquals(2e-9, c.seconds(), 1e-18); // 1 byte each way per layer at 1 GB/s
    // Transitions: t0 4 pairs (2 cross), t1 4 (2 cross), t2 1 (0), t3 4 (0).
    assertEquals(13, c.transitions());
    assertEquals(4, c.crossGpu());
    assertEquals(4, c.crossNode());
  }

  @Test
  void remoteReplicasSpreadOverTokensOfOneGpu() {
    // 4 GPUs on 2 nodes; expert 0 lives on GPUs 2 and 3 only.
    int[] layer = {1, 2, 3, 1, 0, 2, 0, 3};
    Placement p = new Placement(4, 4, new int[][] {layer});
    int[] ids = new int[8];
    RoutingTrace tr = new RoutingTrace("spread", 8, 1, 1, 4, ids); // every token picks expert 0
    DispatchCost c = DispatchModel.replay(tr, p, new Network(2, 10, 2, 100, 10), null);
    long[][] rows = c.layers()[0].rows();
    assertArrayEquals(new long[] {0, 0, 1, 1}, rows[0]); // tokens 0 and 1: no replica on node 0, spread
    assertArrayEquals(new long[] {0, 0, 1, 1}, rows[1]);
    assertArrayEquals(new long[] {0, 0, 2, 0}, rows[2]); // own GPU
    assertArrayEquals(new long[] {0, 0, 0, 2}, rows[3]);
    assertEquals(4 * 20, c.interBytes());
    assertEquals(0, c.intraBytes());
    // GPU 2 receives 2 rows = 40 bytes over 10 GB/s.
    assertEquals(40 / 10e9, c.seconds(), 1e-18);
  }

  /**
   * The replay's replica choice is the data path's: on random placements with replicas and nodes,
   * its rows (one per token and destination GPU) and its cross-GPU / cross-node transitions equal
   * a token-by-token count whose every choice is {@link ExpertMap#chooseSlot}, with the token of
   * rank r numbered from r's first token of {@link TokenSplit}; and chooseSlot is the rule as its
   * documentation states it ({@link WireCases#ruleSlot}).
   */
  @Test
  void replicaChoiceIsTheDataPathRule() {
    TestSeed base = TestSeed.fresh();
    for (int c = 0; c < 300; c++) {
      long seed = base.value() + c;
      String ctx = base + " case " + c;
      SplittableRandom rnd = new SplittableRandom(seed);
      Topology topo = WireCases.topology(rnd);
      int G = topo.worldSize(), L = 1 + rnd.nextInt(3);
      Placement p = WireCases.placement(rnd, L, G);
      RoutingTrace tr = WireCases.trace(rnd, 1 + rnd.nextInt(40), L, p.experts());
      DispatchCost got = DispatchModel.replay(tr, p, new Network(topo.nodes(), 1, 1, 1, 1), null);

      TokenSplit split = new TokenSplit(tr.tokens(), G);
      int K = tr.topk();
      int[][] gpuOf = new int[L][tr.tokens() * K];
      long trans = 0, xg = 0, xn = 0;
      for (int l = 0; l < L; l++) {
        ExpertMap map = p.expertMap(l, topo);
        long[][] rows = new long[G][G];
        for (int r = 0; r < G; r++) {
          for (int t = 0; t < split.count(r); t++) {
            int i = split.start(r) + t;
            boolean[] sent = new boolean[G];
            for (int k = 0; k < K; k++) {
              int e = tr.expert(i, l, k);
              gpuOf[l][i * K + k] = -1;
              if (e < 0) continue;
              int slot = map.chooseSlot(r, t, e);
              assertEquals(WireCases.ruleSlot(p.phy2log()[l], topo, r, t, e), slot, ctx);
              int d = map.rankOfSlot(slot);
              gpuOf[l][i * K + k] = d;
              if (!sent[d]) rows[r][d]++;
              sent[d] = true;
            }
            if (l == 0) continue;
            for (int a = 0; a < K; a++) {
              for (int b = 0; b < K; b++) {
                int ga = gpuOf[l - 1][i * K + a], gb = gpuOf[l][i * K + b];
                if (ga < 0 || gb < 0) continue;
                trans++;
                if (ga != gb) xg++;
                if (topo.nodeOf(ga) != topo.nodeOf(gb)) xn++;
              }
            }
          }
        }
        for (int r = 0; r < G; r++) assertArrayEquals(rows[r], got.layers()[l].rows()[r], ctx + " layer " + l + " rank " + r);
      }
      assertEquals(trans, got.transitions(), ctx);
      assertEquals(xg, got.crossGpu(), ctx);
      assertEquals(xn, got.crossNode(), ctx);
    }
  }

  @Test
  void tokenSplitIsContiguousEvenAndTheBenchSplitWhenItDivides() {
    for (int ranks = 1; ranks <= 9; ranks++) {
      for (int tokens = 0; tokens <= 40; tokens++) {
        TokenSplit s = new TokenSplit(tokens, ranks);
        assertEquals(0, s.start(0));
        assertEquals(tokens, s.start(ranks));
        for (int r = 0; r < ranks; r++) {
          int n = s.count(r);
          assertTrue(n == tokens / ranks || n == tokens / ranks + 1, tokens + " on " + ranks + ": rank " + r + " holds " + n);
        }
      }
      for (int perRank = 0; perRank <= 5; perRank++) {
        TokenSplit s = TokenSplit.perRank(perRank, ranks);
        for (int r = 0; r <= ranks; r++) assertEquals(r * perRank, s.start(r));
      }
    }
  }
}
