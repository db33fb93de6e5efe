package io.moeyard.testkit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * The kit checked on its own, so that a backend is never judged by a wrong oracle: the reference
 * against identities that need no second implementation, its replica rule against the engine's,
 * the generator's reach, the seed policy.
 */
class TestKitTest {

  @Test
  void everySelectionIsReceivedOnceInTheContractsOrder() {
    TestSeed seed = TestSeed.fresh();
    for (int i = 0; i < 200; i++) {
      Workload wl = Workload.random(seed.value() + i, 30);
      seed.check(() -> {
        NaiveReference ref = wl.ref;
        int spr = wl.map.slotsPerRank();
        int selections = 0;
        for (int r = 0; r < wl.ranks(); r++) {
          for (int t = 0; t < wl.tokens[r]; t++) {
            for (int k = 0; k < wl.topk; k++) {
              int e = wl.idx[r][t * wl.topk + k];
              int p = ref.slot(r, t, k);
              if (e < 0) {
                assertEquals(-1, p);
                assertEquals(-1, ref.row(r, t, k));
                continue;
              }
              selections++;
              assertEquals(e, wl.map.expertOfSlot(p), "the slot holds the expert");
              int d = p / spr;
              int row = ref.row(r, t, k);
              assertEquals(r, ref.sourceRank(d, row));
              assertEquals(t, ref.sourceToken(d, row));
              assertEquals(k, ref.sourceK(d, row));
            }
          }
        }
        int rows = 0;
        for (int d = 0; d < wl.ranks(); d++) {
          rows += ref.rowsReceivedBy(d);
          assertEquals(ref.rowsReceivedBy(d), Arrays.stream(ref.slotCounts(d)).sum());
          // expert-major: local slot, then source rank, then source token
          int at = 0;
          for (int ls = 0; ls < spr; ls++) {
            for (int j = 0; j < ref.slotCounts(d)[ls]; j++, at++) {
              int p = ref.slot(ref.sourceRank(d, at), ref.sourceToken(d, at), ref.sourceK(d, at));
              assertEquals(d * spr + ls, p, "row " + at + " of rank " + d);
              if (j > 0) {
                long prev = (long) ref.sourceRank(d, at - 1) << 32 | ref.sourceToken(d, at - 1);
                long cur = (long) ref.sourceRank(d, at) << 32 | ref.sourceToken(d, at);
                assertTrue(prev < cur, "row " + at + " of rank " + d + " is out of order");
              }
            }
          }
        }
        assertEquals(selections, rows, wl.toString());
      });
    }
  }

  @Test
  void theReplicaRuleIsTheEngines() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int i = 0; i < 300; i++) {
      Topology topo = new Topology(1 + rnd.nextInt(3), 1 + rnd.nextInt(4));
      int ranks = topo.worldSize();
      int spr = 1 + rnd.nextInt(6);
      ExpertMap map = Workload.randomMap(rnd, topo, spr, 1 + rnd.nextInt(ranks * spr));
      for (int r = 0; r < ranks; r++) {
        for (int t = 0; t < 7; t++) {
          for (int e = 0; e < map.experts(); e++) {
            assertEquals(map.chooseSlot(r, t, e), NaiveReference.chooseSlot(map, r, t, e), seed + " " + map + " r=" + r + " t=" + t + " e=" + e);
          }
        }
      }
    }
  }

  @Test
  void theReplicaRuleByHand() {
    // 4 ranks, 2 per node, 2 slots per rank; expert 0 in slots {1, 5, 6}, expert 1 in {4, 7}
    ExpertMap map = ExpertMap.of(new Topology(2, 2), 4, new int[] {2, 0, 3, 3, 1, 0, 0, 1});
    assertEquals(1, NaiveReference.chooseSlot(map, 0, 0, 0)); // own rank
    assertEquals(1, NaiveReference.chooseSlot(map, 1, 0, 0)); // own node
    assertEquals(5, NaiveReference.chooseSlot(map, 2, 0, 0)); // own rank, not slot 6 of the node
    assertEquals(4, NaiveReference.chooseSlot(map, 0, 0, 1)); // nowhere on node 0: all, (0 + 0) % 2
    assertEquals(7, NaiveReference.chooseSlot(map, 0, 1, 1)); // (0 + 1) % 2
    assertEquals(7, NaiveReference.chooseSlot(map, 1, 0, 1)); // (1 + 0) % 2
  }

  /** Identity experts, unit weights, top-1, FP32: combine(dispatch(x)) == x, zeros for unrouted tokens. */
  @Test
  void combineOfTheReceivedRowsWithUnitWeightsIsTheInput() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    Topology topo = new Topology(2, 2);
    ExpertMap map = Workload.randomMap(rnd, topo, 3, 9);
    int[] tokens = {17, 0, 40, 5};
    int[][] idx = new int[4][];
    for (int r = 0; r < 4; r++) idx[r] = Workload.randomRouting(rnd, tokens[r], 9, 1, 0.2);
    Workload wl = Workload.of(map, 1, 24, DType.FP32, tokens, idx, rnd.nextLong());
    RowBuffer[] x = wl.xs();
    RowBuffer[] received = new RowBuffer[4];
    for (int d = 0; d < 4; d++) received[d] = wl.ref.received(d, x);
    for (int r = 0; r < 4; r++) {
      float[] ones = new float[tokens[r]];
      Arrays.fill(ones, 1f);
      RowBuffer out = wl.ref.combined(r, ones, received, DType.FP32);
      for (int t = 0; t < tokens[r]; t++) {
        for (int c = 0; c < 24; c++) {
          float want = idx[r][t] >= 0 ? x[r].getFloat(t, c) : 0f;
          assertEquals(want, out.getFloat(t, c), seed + " rank " + r + " token " + t);
        }
      }
    }
  }

  /** Two ranks, one token to two experts on rank 1 and one on rank 0: the rounding points of the contract. */
  @Test
  void combineRoundsEachPartialThenTheSum() {
    ExpertMap map = ExpertMap.trivial(Topology.singleNode(2), 4);
    int[][] idx = {{3, 0, 2}, {}};
    Workload wl = Workload.of(map, 3, 1, DType.BF16, new int[] {1, 0}, idx, 1);
    // rank 0 receives the expert-0 row, rank 1 the rows of slots 2 then 3
    assertEquals(1, wl.ref.rowsReceivedBy(0));
    assertEquals(2, wl.ref.rowsReceivedBy(1));
    assertEquals(2, wl.ref.sourceK(1, 0));
    assertEquals(0, wl.ref.sourceK(1, 1));
    RowBuffer[] y = wl.ys();
    y[0].setFloat(0, 0, 1f);
    y[1].setFloat(0, 0, 1f); // expert 2
    y[1].setFloat(1, 0, 1f); // expert 3
    float[] w = {3f / 512, -1f, 1f}; // k=0: expert 3, k=1: expert 0, k=2: expert 2
    // rank 1's partial 1 + 3/512 rounds to bf16 1 + 1/128; at home -1 + that = 1/128
    RowBuffer out = wl.ref.combined(0, w, y, DType.BF16);
    assertEquals(1f / 128, out.getFloat(0, 0));
    // one rank holds every slot: one partial, summed in slot order -1 + 1 + 3/512, exact in bf16
    ExpertMap one = ExpertMap.trivial(Topology.singleNode(1), 4);
    Workload wl1 = Workload.of(one, 3, 1, DType.BF16, new int[] {1}, new int[][] {{3, 0, 2}}, 1);
    RowBuffer[] y1 = wl1.ys();
    for (int i = 0; i < 3; i++) y1[0].setFloat(i, 0, 1f);
    assertEquals(3f / 512, wl1.ref.combined(0, w, y1, DType.BF16).getFloat(0, 0));
  }

  @Test
  void theGeneratorReachesEveryEdgeCase() {
    TestSeed seed = TestSeed.fresh();
    Set<String> seen = new TreeSet<>();
    Set<DType> dtypes = EnumSet.noneOf(DType.class);
    for (int i = 0; i < 400; i++) {
      Workload wl = Workload.random(seed.value() + i, 8);
      dtypes.add(wl.dtype);
      if (wl.map.slots() > wl.map.experts()) seen.add("replicas");
      if (wl.map.topology().nodes() > 1) seen.add("nodes");
      if (wl.ranks() > 8) seen.add("wide");
      if (wl.topk == 1) seen.add("top-1");
      if (wl.hidden % 16 != 0) seen.add("odd hidden");
      if (Arrays.stream(wl.tokens).anyMatch(n -> n == 0)) seen.add("a rank without tokens");
      if (Arrays.stream(wl.tokens).allMatch(n -> n == 0)) seen.add("no tokens at all");
      if (Arrays.stream(wl.idx).flatMapToInt(Arrays::stream).anyMatch(e -> e < 0)) seen.add("-1 entries");
      int[] routed = Arrays.stream(wl.idx).flatMapToInt(Arrays::stream).filter(e -> e >= 0).distinct().toArray();
      if (routed.length == 1 && Arrays.stream(wl.tokens).filter(n -> n > 0).count() > 1) seen.add("all tokens to one expert");
      boolean anyRows = false;
      boolean emptyReceiver = false;
      for (int d = 0; d < wl.ranks(); d++) {
        anyRows |= wl.ref.rowsReceivedBy(d) > 0;
        emptyReceiver |= wl.ref.rowsReceivedBy(d) == 0;
      }
      if (anyRows && emptyReceiver) seen.add("a rank that receives nothing");
    }
    assertEquals(EnumSet.allOf(DType.class), dtypes, seed.toString());
    assertEquals(new TreeSet<>(Set.of("replicas", "nodes", "wide", "top-1", "odd hidden", "a rank without tokens", "no tokens at all",
        "-1 entries", "all tokens to one expert", "a rank that receives nothing")), seen, seed.toString());
  }

  @Test
  void aFixedTopologyAndEachEdgeCaseAreWhatTheyPromise() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int i = 0; i < 60; i++) {
      int local = 1 + rnd.nextInt(4);
      Topology topo = new Topology(1 + rnd.nextInt(3), local);
      long s = rnd.nextLong();
      String what = seed + " case " + i + " " + topo;
      assertEquals(topo, Workload.random(s, topo, 12).map.topology(), what);
      Workload receivesNothing = Workload.edge(s, topo, 12, 0);
      assertEquals(topo, receivesNothing.map.topology(), what);
      if (topo.worldSize() > 1) assertEquals(0, receivesNothing.ref.rowsReceivedBy(topo.worldSize() - 1), what);
      assertTrue(Arrays.stream(Workload.edge(s, topo, 12, 1).tokens).allMatch(n -> n == 0), what);
      assertTrue(Arrays.stream(Workload.edge(s, topo, 12, 2).tokens).anyMatch(n -> n == 0), what);
      Workload oneExpert = Workload.edge(s, topo, 12, 3);
      assertEquals(1, oneExpert.topk, what);
      assertEquals(1, Arrays.stream(oneExpert.idx).flatMapToInt(Arrays::stream).distinct().count(), what);
    }
    assertThrows(IllegalArgumentException.class, () -> Workload.edge(1, new Topology(1, 2), 4, Workload.EDGE_CASES));
  }

  @Test
  void theSameSeedGivesTheSameWorkload() {
    long s = TestSeed.fresh().value();
    Workload a = Workload.random(s, 20);
    Workload b = Workload.random(s, 20);
    assertEquals(a.toString(), b.toString());
    assertArrayEquals(a.idx, b.idx);
    assertArrayEquals(a.x, b.x);
    assertArrayEquals(a.y, b.y);
    RowBuffer[] xa = a.xs();
    if (a.dtype.hasScales()) {
      for (int r = 0; r < a.ranks(); r++) assertArrayEquals(a.xScales[r], xa[r].scales().toArray(ValueLayout.JAVA_FLOAT));
    }
  }

  @Test
  void aSeedIsNamedInTheFailureAndReplayed() {
    TestSeed seed = new TestSeed(42);
    AssertionError e = assertThrows(AssertionError.class, () -> seed.check(() -> {
      throw new IllegalStateException("boom");
    }));
    assertEquals("seed 42 (replay with -Dmoeyard.test.seed=42): boom", e.getMessage());
    String before = System.getProperty(TestSeed.PROPERTY);
    try {
      System.setProperty(TestSeed.PROPERTY, "1234");
      assertEquals(1234, TestSeed.fresh().value());
      System.setProperty(TestSeed.PROPERTY, "12x");
      IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, TestSeed::fresh);
      assertTrue(bad.getMessage().contains("'12x'"), bad.getMessage());
    } finally {
      if (before == null) System.clearProperty(TestSeed.PROPERTY);
      else System.setProperty(TestSeed.PROPERTY, before);
    }
  }
}
