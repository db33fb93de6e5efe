package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.placement.speculate.Assignments;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.speculate.AffinityModel;
import io.moeyard.placement.speculate.SpeculationReport;
import io.moeyard.placement.speculate.SpeculativeShuffler;
import io.moeyard.placement.trace.RoutingTrace;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** A layer stack with and without speculative shuffling: same bits, tokens really moved, rows counted. */
public class LayerRunTest {
  private static final PrintStream QUIET = new PrintStream(OutputStream.nullOutputStream());

  /**
   * Tokens follow expert chains (expert e at layer l tends to be followed by e + 1), some -1
   * entries; also the trace of the process runs' tests (bench.cli).
   */
  public static RoutingTrace chainTrace(SplittableRandom rnd, int tokens, int layers, int topk, int experts) {
    int[] ids = new int[tokens * layers * topk];
    for (int t = 0; t < tokens; t++) {
      int start = rnd.nextInt(experts);
      for (int l = 0; l < layers; l++) {
        for (int k = 0; k < topk; k++) {
          int e = rnd.nextInt(4) == 0 ? rnd.nextInt(experts) : (start + l + k * 3) % experts;
          boolean dup = false;
          for (int j = 0; j < k; j++) dup |= ids[(t * layers + l) * topk + j] == e;
          ids[(t * layers + l) * topk + k] = dup || rnd.nextInt(20) == 0 ? -1 : e;
        }
      }
    }
    return new RoutingTrace("chain", tokens, layers, topk, experts, ids);
  }

  @Test
  void speculationMovesTokensAndKeepsTheBits() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int c = 0; c < 3; c++) {
      int ranks = 2 + rnd.nextInt(3);
      int nodes = ranks % 2 == 0 ? 2 : 1;
      int experts = ranks * (1 + rnd.nextInt(4));
      int topk = 1 + rnd.nextInt(Math.min(3, experts));
      int tokensPerRank = 5 + rnd.nextInt(30);
      int layers = 5;
      RoutingTrace train = chainTrace(rnd, 400, layers, topk, experts);
      RoutingTrace eval = chainTrace(rnd, ranks * tokensPerRank, layers, topk, experts);
      int[][] p2l = new int[layers][experts];
      for (int[] row : p2l) for (int s = 0; s < experts; s++) row[s] = s;
      SpeculativeShuffler shuffler = new SpeculativeShuffler(AffinityModel.learn(List.of(train)), p2l, ranks, SpeculativeShuffler.TOLERANCE);
      LayerRun.Result res = LayerRun.run(eval, 1, layers, ranks, nodes, tokensPerRank, 24, null, shuffler, 1,
          QUIET);
      String what = seed + " case " + c;
      assertTrue(res.identical(), what);
      assertEquals(res.home().dispatchRows(), res.speculative().dispatchRows(), what + ": every selection delivered in both runs");
      assertEquals(0, res.home().forwardRemote(), what);
      assertTrue(res.speculative().forwardRemote() > 0, what + ": the shuffle moved no token");
    }
  }

  /**
   * The time split: in every run of both modes the dispatch spans and the combine spans, each
   * summed over layers, add up to the run's total exactly (the same spans), every part took time,
   * and each reported median is the median of its runs.
   */
  @Test
  void theDispatchAndCombineSpansAddUpToTheTotal() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int ranks = 2 + rnd.nextInt(3);
    int experts = ranks * (1 + rnd.nextInt(4));
    int topk = 1 + rnd.nextInt(Math.min(3, experts));
    int tokensPerRank = 5 + rnd.nextInt(30);
    int layers = 4;
    int iters = 2 + rnd.nextInt(3);
    RoutingTrace train = chainTrace(rnd, 400, layers, topk, experts);
    RoutingTrace eval = chainTrace(rnd, ranks * tokensPerRank, layers, topk, experts);
    SpeculativeShuffler shuffler = new SpeculativeShuffler(AffinityModel.learn(List.of(train)), trivial(layers, experts), ranks,
        SpeculativeShuffler.TOLERANCE);
    LayerRun.Result res = LayerRun.run(eval, 0, layers, ranks, 1, tokensPerRank, 16, null, shuffler, iters, QUIET);
    for (LayerRun.Mode m : new LayerRun.Mode[] {res.home(), res.speculative()}) {
      String what = seed + " " + m.name();
      assertEquals(iters, m.totalNs().length, what);
      assertEquals(iters, m.dispatchNs().length, what);
      assertEquals(iters, m.combineNs().length, what);
      for (int i = 0; i < iters; i++) {
        assertTrue(m.dispatchNs()[i] > 0 && m.combineNs()[i] > 0, what + " run " + i + ": a part took no time");
        assertEquals(m.totalNs()[i], m.dispatchNs()[i] + m.combineNs()[i], what + " run " + i);
      }
      assertEquals(median(m.totalNs()) / 1e6, m.medianMs(), 0, what);
      assertEquals(median(m.dispatchNs()) / 1e6, m.dispatchMedianMs(), 0, what);
      assertEquals(median(m.combineNs()) / 1e6, m.combineMedianMs(), 0, what);
    }
  }

  private static double median(long[] v) {
    long[] s = v.clone();
    java.util.Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2.0;
  }

  /**
   * With ranks in several nodes, both objectives keep the bits, and the rows crossing nodes that
   * the shuffler's report predicts from the assignment (SpeculationReport) are the rows the data
   * path moved (no replicas, so the replica rule cannot differ): the objective is scored in the
   * data path's own units.
   */
  @Test
  void theReportCountsTheRowsCrossingNodesThatTheDataPathMoves() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    long crossed = 0, forwarded = 0;
    for (int c = 0; c < 4; c++) {
      int nodes = 2 + rnd.nextInt(2);
      int ranks = nodes * (1 + rnd.nextInt(2));
      int experts = ranks * (1 + rnd.nextInt(3));
      int topk = 1 + rnd.nextInt(Math.min(4, experts));
      int tokensPerRank = rnd.nextInt(4) == 0 ? 1 : 4 + rnd.nextInt(20);
      int layers = 3 + rnd.nextInt(3);
      RoutingTrace train = chainTrace(rnd, 300, layers, topk, experts);
      RoutingTrace eval = chainTrace(rnd, ranks * tokensPerRank, layers, topk, experts);
      int[][] p2l = trivial(layers, experts);
      AffinityModel model = AffinityModel.learn(List.of(train));
      for (SpeculativeShuffler.Objective o : SpeculativeShuffler.Objective.values()) {
        SpeculativeShuffler shuffler = new SpeculativeShuffler(model, p2l, ranks, nodes, o, SpeculativeShuffler.TOLERANCE);
        String what = seed + " case " + c + " " + ranks + " ranks in " + nodes + " nodes, top-" + topk + ", objective " + o;
        LayerRun.Result res = LayerRun.run(eval, 0, layers, ranks, nodes, tokensPerRank, 8, null, shuffler, 1, QUIET);
        assertTrue(res.identical(), what + ": " + res.difference());
        assertEquals(o, res.objective(), what);
        SpeculationReport r = SpeculationReport.measure(eval, new Placement(experts, ranks, p2l), shuffler.assign(eval, null), nodes, 2);
        assertEquals(res.home().dispatchRemoteNode(), r.dispatchNodeRowsHome(), what + ": home dispatch rows crossing nodes");
        assertEquals(res.home().combineRemoteNode(), r.dispatchNodeRowsHome(), what + ": home partials crossing nodes");
        assertEquals(res.speculative().dispatchRemoteNode(), r.dispatchNodeRowsSpeculative(), what + ": dispatch rows crossing nodes");
        assertEquals(res.speculative().combineRemoteNode(), r.dispatchNodeRowsSpeculative(), what + ": partials crossing nodes");
        assertEquals(res.speculative().forwardRemoteNode(), r.forwardNodeRowsSpeculative(), what + ": forwards crossing nodes");
        assertEquals(res.speculative().remoteNode(), r.nodeRowsSpeculative(), what);
        crossed += r.nodeRowsHome();
        forwarded += r.forwardNodeRowsSpeculative();
      }
    }
    assertTrue(crossed > 0 && forwarded > 0, seed + ": rows crossed nodes (" + crossed + ") and tokens forwarded across them ("
        + forwarded + ")");
  }

  /** The trivial placement of every layer: slot s holds expert s. */
  private static int[][] trivial(int layers, int experts) {
    int[][] p2l = new int[layers][experts];
    for (int[] row : p2l) for (int s = 0; s < experts; s++) row[s] = s;
    return p2l;
  }

  @Test
  void aCorruptedFinalRowIsReported() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int ranks = 2 + rnd.nextInt(3);
    int experts = ranks * 2;
    int layers = 4;
    int tokensPerRank = 4 + rnd.nextInt(10);
    RoutingTrace train = chainTrace(rnd, 200, layers, 2, experts);
    RoutingTrace eval = chainTrace(rnd, ranks * tokensPerRank, layers, 2, experts);
    SpeculativeShuffler shuffler = new SpeculativeShuffler(AffinityModel.learn(List.of(train)), trivial(layers, experts), ranks,
        SpeculativeShuffler.TOLERANCE);
    LayerRun.Inputs in = new LayerRun.Inputs(eval, 1, layers, ranks, 1, tokensPerRank, 16, null, shuffler);
    LayerRun.Result clean = LayerRun.run(in, 1, QUIET, -1);
    int bad = rnd.nextInt(ranks);
    LayerRun.Result res = LayerRun.run(in, 1, QUIET, bad);
    String what = seed + " corrupt rank " + bad;
    assertTrue(clean.identical(), what);
    assertFalse(res.identical(), what);
    // every rank ends holding its home tokens: the corrupted row is one of rank bad's
    assertTrue(res.difference().startsWith("1 of " + ranks * tokensPerRank + " tokens' final rows differ"), what + ": " + res.difference());
    assertTrue(res.difference().endsWith("(on rank " + bad + ")"), what + ": " + res.difference());
    assertEquals(clean.home().outputDigest(), res.home().outputDigest(), what);
    assertNotEquals(clean.speculative().outputDigest(), res.speculative().outputDigest(), what);
  }

  @Test
  void edgeCasesKeepTheBits() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int ranks = 3;
    int experts = 6;
    int layers = 4;
    int tokensPerRank = 6;
    int G = ranks * tokensPerRank;
    // top-1, every token to expert 0 at every layer (ranks 1 and 2 receive nothing), with -1 entries
    int[] ids = new int[G * layers];
    for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(4) == 0 ? -1 : 0;
    RoutingTrace hot = new RoutingTrace("hot", G, layers, 1, experts, ids);
    RoutingTrace train = chainTrace(rnd, 200, layers, 1, experts);
    SpeculativeShuffler shuffler = new SpeculativeShuffler(AffinityModel.learn(List.of(train, hot)), trivial(layers, experts), ranks,
        SpeculativeShuffler.TOLERANCE);
    LayerRun.Result res = LayerRun.run(new LayerRun.Inputs(hot, 1, layers, ranks, 1, tokensPerRank, 8, null, shuffler), 2, QUIET, -1);
    assertTrue(res.identical(), seed + ": " + res.difference());
    long selections = 0;
    for (int g = 0; g < G; g++) for (int l = 1; l < layers; l++) if (ids[g * layers + l] >= 0) selections++;
    assertEquals(selections, res.home().dispatchRows(), seed.toString());
    assertEquals(selections, res.speculative().dispatchRows(), seed.toString());
  }

  @Test
  void theRowDigestSeesEverySingleBitFlip() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int bytes : new int[] {2, 6, 8, 14, 48}) {
      byte[] row = new byte[bytes];
      rnd.nextBytes(row);
      java.lang.foreign.MemorySegment seg = java.lang.foreign.MemorySegment.ofArray(row.clone());
      long clean = LayerRun.rowDigest(seg, 0, bytes);
      for (int bit = 0; bit < 8 * bytes; bit++) {
        java.lang.foreign.MemorySegment flipped = java.lang.foreign.MemorySegment.ofArray(row.clone());
        flipped.set(java.lang.foreign.ValueLayout.JAVA_BYTE, bit / 8, (byte) (row[bit / 8] ^ (1 << (bit % 8))));
        assertNotEquals(clean, LayerRun.rowDigest(flipped, 0, bytes), seed + ": " + bytes + " bytes, bit " + bit);
      }
    }
  }

  @Test
  void ranksThatDeriveDifferentAssignmentsAllFail() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int ranks = 3;
    int experts = 6;
    int layers = 4;
    RoutingTrace train = chainTrace(rnd, 200, layers, 2, experts);
    RoutingTrace eval = chainTrace(rnd, ranks * 8, layers, 2, experts);
    SpeculativeShuffler shuffler = new SpeculativeShuffler(AffinityModel.learn(List.of(train)), trivial(layers, experts), ranks,
        SpeculativeShuffler.TOLERANCE);
    LayerRun.Prepared p = LayerRun.prepare(new LayerRun.Inputs(eval, 1, layers, ranks, 1, 8, 8, null, shuffler), QUIET);
    // rank 1 puts one token elsewhere at one layer of the run
    Assignments a = p.speculative();
    int[] rank = a.rank().clone();
    int g = rnd.nextInt(a.tokens());
    int l = 1 + rnd.nextInt(layers - 1);
    rank[g * layers + l] = (rank[g * layers + l] + 1) % ranks;
    LayerRun.Prepared other = new LayerRun.Prepared(p.in(), p.trace(), p.topology(), p.maps(), p.home(),
        new Assignments(a.tokens(), a.layers(), a.gpus(), rank, a.predicted()));
    java.util.concurrent.atomic.AtomicInteger failed = new java.util.concurrent.atomic.AtomicInteger();
    try (CpuWorld w = CpuWorld.create(p.topology())) {
      // a CollectiveException: the command line says it in one line (Moeyard's handler), on every rank
      io.moeyard.engine.CollectiveException e = assertThrows(io.moeyard.engine.CollectiveException.class, () -> w.run(t -> {
        try {
          LayerRun.requireSameDerivation(t, t.rank() == 1 ? other : p);
        } catch (io.moeyard.engine.CollectiveException ex) {
          failed.incrementAndGet();
          throw ex;
        }
        return null;
      }));
      assertTrue(e.getMessage().contains("ranks 0 and 1 derived different"), seed + ": " + e.getMessage());
    }
    assertEquals(ranks, failed.get(), seed + ": every rank fails alike");
    try (CpuWorld w = CpuWorld.create(p.topology())) {
      w.run(t -> {
        LayerRun.requireSameDerivation(t, p);
        return null;
      });
    }
  }
}
