package io.moeyard.combine.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.testkit.Workload;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The node-level path (rows cross to each remote node once, through the rank with the sender's
 * local index there; combine sums per node on the way back) against the single-hop fused path
 * and the kit's reference, on random multi-node workloads and the edge cases: every window
 * (rows, FP8 scales, per-row and per-pair metadata) and every combine output bit for bit.
 */
class NodeRelayTest {

  /** Everything one rank's dispatch + combine left behind, as plain arrays. */
  record Result(byte[] rows, float[] scales, float[] weights, int[] rowSrc, int[] rowToken, int[] pairSrc,
      int[] pairHome, int[] pairRowStart, int[] pairRows, byte[] out, boolean relayed) {}

  static List<Result> run(Workload wl, boolean relay, int chunk) {
    int maxTokens = Math.max(1, wl.maxTokens());
    try (CpuWorld world = CpuWorld.create(wl.map.topology())) {
      return world.run(t -> {
        int r = t.rank();
        int cap = Math.max(1, wl.ref.rowsReceivedBy(r));
        try (PeerMemory memory = PeerMemory.offHeap();
            FusedDispatcher d = new FusedDispatcher(t, wl.map, new DispatchOptions(chunk), memory, cap,
                relay ? new FusedDispatcher.RelaySize(maxTokens, wl.topk, wl.hidden, wl.dtype) : null);
            FusedCombiner c = new FusedCombiner(t, chunk, memory, maxTokens, wl.topk, relay)) {
          RowBuffer into = memory.rows(cap, wl.hidden, wl.dtype);
          try (DispatchHandle h = d.dispatch(wl.x(r), wl.routing(r), into)) {
            int n = h.receivedRows();
            String p = wl.ref.checkDispatch(r, h.received(), n, wl.xs());
            if (p != null) throw new AssertionError((relay ? "relay" : "direct") + " dispatch: " + p);
            RowBuffer out = memory.rows(wl.tokens[r], wl.hidden, wl.outType); // freed with it, not by the collector
            out.segment().fill((byte) 0x7F); // unwritten rows show
            c.combine(h, wl.y(r), out);
            int q = h.receivedPairs();
            int[] pairSrc = new int[q];
            int[] pairHome = new int[q];
            int[] pairRowStart = new int[q + 1];
            for (int i = 0; i < q; i++) {
              pairSrc[i] = h.pairSourceRank(i);
              pairHome[i] = h.pairHomeIndex(i);
              pairRowStart[i] = h.pairRowStart(i);
            }
            pairRowStart[q] = h.pairRowStart(q);
            int[] pairRows = new int[n];
            int[] rowSrc = new int[n];
            int[] rowToken = new int[n];
            for (int i = 0; i < n; i++) {
              pairRows[i] = h.pairRow(i);
              rowSrc[i] = h.rowSourceRank(i);
              rowToken[i] = h.rowSourceToken(i);
            }
            float[] scales = into.scales() == null ? new float[0]
                : into.scales().asSlice(0, (long) n * into.scalesPerRow() * 4).toArray(ValueLayout.JAVA_FLOAT);
            return new Result(DispatchCombinePropertyTest.bytes(into, n), scales, Arrays.copyOf(h.receivedWeights(), n), rowSrc,
                rowToken, pairSrc, pairHome, pairRowStart, pairRows, DispatchCombinePropertyTest.bytes(out, wl.tokens[r]),
                h.nodeRelay());
          }
        }
      });
    }
  }

  /** Relay and direct give the same windows and outputs, and both the reference's. */
  static void check(Workload wl, int chunk) {
    List<Result> relay = run(wl, true, chunk);
    List<Result> direct = run(wl, false, chunk);
    for (int r = 0; r < wl.ranks(); r++) {
      Result a = relay.get(r);
      Result b = direct.get(r);
      String at = " of rank " + r;
      assertEquals(wl.map.topology().nodes() > 1, a.relayed(), "relay path taken" + at);
      assertArrayEquals(b.rows(), a.rows(), "received rows" + at);
      assertArrayEquals(b.scales(), a.scales(), "fp8 scales" + at);
      assertArrayEquals(b.weights(), a.weights(), "row weights" + at);
      assertArrayEquals(b.rowSrc(), a.rowSrc(), "row source ranks" + at);
      assertArrayEquals(b.rowToken(), a.rowToken(), "row source tokens" + at);
      assertArrayEquals(b.pairSrc(), a.pairSrc(), "pair source ranks" + at);
      assertArrayEquals(b.pairHome(), a.pairHome(), "pair home indices" + at);
      assertArrayEquals(b.pairRowStart(), a.pairRowStart(), "pair row starts" + at);
      assertArrayEquals(b.pairRows(), a.pairRows(), "pair rows" + at);
      assertArrayEquals(b.out(), a.out(), "combine output" + at);
      for (int i = 0; i < a.rowSrc().length; i++) {
        assertEquals(wl.ref.sourceRank(r, i), a.rowSrc()[i], "source rank of row " + i + at);
        assertEquals(wl.ref.sourceToken(r, i), a.rowToken()[i], "source token of row " + i + at);
      }
      assertArrayEquals(wl.ref.receivedWeights(r, wl.w), a.weights(), "weights" + at);
      RowBuffer out = new RowBuffer(java.lang.foreign.MemorySegment.ofArray(a.out()), 0, wl.tokens[r], wl.hidden, wl.outType, null);
      String p = wl.ref.checkCombine(r, wl.w[r], wl.ys(), out);
      if (p != null) throw new AssertionError("relay combine: " + p);
    }
  }

  @Test
  void randomMultiNodeWorkloadsGiveTheDirectPathsBitsAndTheReferences() {
    TestSeed seed = TestSeed.fresh();
    int found = 0;
    for (int i = 0; found < 40 && i < 4000; i++) {
      long caseSeed = seed.value() + i;
      Workload wl = Workload.random(caseSeed, 40);
      if (wl.map.topology().nodes() == 1) continue;
      found++;
      int chunk = 1 + new SplittableRandom(caseSeed).nextInt(16);
      int c = i;
      seed.check(() -> {
        try {
          check(wl, chunk);
        } catch (AssertionError | RuntimeException e) {
          throw new AssertionError("case " + c + " " + wl + " chunk=" + chunk + ": " + e.getMessage(), e);
        }
      });
    }
    assertEquals(40, found, "multi-node cases drawn");
  }

  /** 2 nodes x 2 ranks, 2 slots per rank (experts 0..3 on node 0, 4..7 on node 1). */
  private static final Topology TWO_BY_TWO = new Topology(2, 2);
  private static final ExpertMap MAP = ExpertMap.trivial(TWO_BY_TWO, 8);

  private static int[][] routing(int[] tokens, int topk, java.util.function.IntBinaryOperator expert) {
    int[][] idx = new int[tokens.length][];
    for (int r = 0; r < tokens.length; r++) {
      idx[r] = new int[tokens[r] * topk];
      for (int i = 0; i < idx[r].length; i++) idx[r][i] = expert.applyAsInt(r, i);
    }
    return idx;
  }

  @Test
  void edgeCases() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    List<Workload> cases = new ArrayList<>();
    int[] none = {0, 0, 0, 0};
    int[] some = {5, 0, 7, 3};
    cases.add(Workload.of(MAP, 2, 64, DType.BF16, none, routing(none, 2, (r, i) -> i % 2), rnd.nextLong()));
    // node 1 receives nothing: every token to experts of node 0
    cases.add(Workload.of(MAP, 2, 64, DType.BF16, some, routing(some, 2, (r, i) -> (i + r) % 2 == 0 ? 1 : 2), rnd.nextLong()));
    // every token to one expert, on the other node for half the ranks
    cases.add(Workload.of(MAP, 3, 48, DType.FP16, some, routing(some, 3, (r, i) -> i % 3 == 0 ? 6 : -1), rnd.nextLong()));
    // top-1
    cases.add(Workload.of(MAP, 1, 33, DType.FP32, some, routing(some, 1, (r, i) -> (i * 5 + r) % 8), rnd.nextLong()));
    // -1 entries everywhere, and a token with experts on both nodes and on two ranks of one node
    cases.add(Workload.of(MAP, 4, 16, DType.BF16, some, routing(some, 4, (r, i) -> i % 4 == 3 ? -1 : (i % 4) * 3), rnd.nextLong()));
    // FP8 rows with their scales
    cases.add(Workload.of(MAP, 3, 256, DType.FP8_E4M3, some, routing(some, 3, (r, i) -> (i % 3) * 2 + (i / 3 + r) % 2),
        rnd.nextLong()));
    // 3 nodes x 1 rank: every rank is its node's only rank and its own relay's peer
    Topology three = new Topology(3, 1);
    int[] t3 = {4, 6, 2};
    cases.add(Workload.of(ExpertMap.trivial(three, 6), 2, 40, DType.BF16, t3, routing(t3, 2, (r, i) -> (i % 2) * 3 + (i / 2) % 3),
        rnd.nextLong()));
    for (Workload wl : cases) {
      seed.check(() -> {
        try {
          check(wl, 1 + rnd.nextInt(4));
        } catch (AssertionError | RuntimeException e) {
          throw new AssertionError(wl + ": " + e.getMessage(), e);
        }
      });
    }
  }

  /** Runs one dispatch + combine per rank with the given relay choices; each rank's exception message (null: none). */
  private static List<String> mixed(Workload wl, java.util.function.IntPredicate relayDispatch, boolean relayCombine,
      int combineTokens) {
    int maxTokens = Math.max(1, wl.maxTokens());
    try (CpuWorld world = CpuWorld.create(wl.map.topology())) {
      return world.run(t -> {
        int r = t.rank();
        int cap = Math.max(1, wl.ref.rowsReceivedBy(r));
        try (PeerMemory memory = PeerMemory.offHeap();
            FusedDispatcher d = new FusedDispatcher(t, wl.map, DispatchOptions.defaults(), memory, cap,
                relayDispatch.test(r) ? new FusedDispatcher.RelaySize(maxTokens, wl.topk, wl.hidden, wl.dtype) : null);
            FusedCombiner c = new FusedCombiner(t, 8, memory, combineTokens, wl.topk, relayCombine)) {
          RowBuffer into = memory.rows(cap, wl.hidden, wl.dtype);
          RowBuffer out = memory.rows(wl.tokens[r], wl.hidden, wl.outType); // freed with it, not by the collector
          out.segment().fill((byte) 0x7F);
          try (DispatchHandle h = d.dispatch(wl.x(r), wl.routing(r), into)) {
            c.combine(h, wl.y(r), out);
          }
          return null;
        } catch (io.moeyard.engine.CollectiveException e) {
          return e.getMessage();
        }
      });
    }
  }

  @Test
  void mismatchedPathsFailEveryRankNamingThem() {
    int[] some = {5, 0, 7, 3};
    Workload wl = Workload.of(MAP, 2, 64, DType.BF16, some, routing(some, 2, (r, i) -> (i * 3 + r) % 8), 11);
    List<String> msgs = mixed(wl, r -> r != 2, true, 7);
    for (String m : msgs) {
      assertTrue(m != null && m.contains("dispatch: ranks disagree on the node path: rank 0 relays, rank 2 sends direct"), m);
    }
    msgs = mixed(wl, r -> true, false, 7);
    for (int r = 0; r < msgs.size(); r++) {
      assertTrue(msgs.get(r) != null && msgs.get(r).contains(
          "combine: rank 0: the dispatch took the node-level path, this combiner was built without node relay buffers"),
          msgs.get(r));
    }
    // a combiner sized for fewer tokens than the dispatch relayed: named before any partial moves
    msgs = mixed(wl, r -> true, true, 4);
    for (String m : msgs) {
      assertTrue(m != null && m.contains("combine: rank 0: the node relay holds 4 tokens per rank, the dispatch relayed 7 of rank 2"), m);
    }
  }

  @Test
  void oneNodeIsTheDirectPath() {
    Workload wl = Workload.of(ExpertMap.trivial(Topology.singleNode(3), 6), 2, 32, DType.BF16, new int[] {4, 2, 5},
        routing(new int[] {4, 2, 5}, 2, (r, i) -> (i + r) % 6), 7);
    for (Result res : run(wl, true, 4)) assertTrue(!res.relayed(), "one node never relays");
    check(wl, 4);
  }
}
