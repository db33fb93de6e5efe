package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.speculate.AffinityModel;
import io.moeyard.placement.speculate.SpeculativeShuffler;
import io.moeyard.placement.trace.RoutingTrace;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** A layer stack with and without speculative shuffling: same bits, tokens really moved, rows counted. */
class LayerRunTest {
  /** Tokens follow expert chains (expert e at layer l tends to be followed by e + 1), some -1 entries. */
  private static RoutingTrace chainTrace(SplittableRandom rnd, int tokens, int layers, int topk, int experts) {
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
          new PrintStream(OutputStream.nullOutputStream()));
      String what = seed + " case " + c;
      assertTrue(res.identical(), what);
      assertEquals(res.home().dispatchRows(), res.speculative().dispatchRows(), what + ": every selection delivered in both runs");
      assertEquals(0, res.home().forwardRemote(), what);
      assertTrue(res.speculative().forwardRemote() > 0, what + ": the shuffle moved no token");
    }
  }
}
