package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The bench's rows block counts what the dispatch delivered and what crossed nodes on the node path
 * that ran: checked against a count from the routing.
 */
class BenchRowsTest {
  @Test
  void rowsBlockMatchesACountFromTheRouting() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int i = 0; i < 6; i++) {
      int nodes = 1 + rnd.nextInt(3);
      int ranks = nodes * (1 + rnd.nextInt(3));
      int slots = ranks * (1 + rnd.nextInt(4));
      int experts = Math.max(1, slots - rnd.nextInt(Math.max(1, slots / 2)));
      int[] p2l = new int[slots];
      for (int p = 0; p < slots; p++) p2l[p] = p < experts ? p : rnd.nextInt(experts);
      int topk = 1 + rnd.nextInt(Math.min(4, experts));
      int tokens = rnd.nextInt(30);
      CommConfig.NodePath path = rnd.nextBoolean() ? CommConfig.NodePath.RELAY : CommConfig.NodePath.DIRECT;
      BenchConfig c = new BenchConfig(ranks, tokens, 16, experts, topk, DType.BF16, null, 1, 0, 1 + rnd.nextInt(8),
          rnd.nextLong(), null, nodes, p2l, path);
      BenchResult res = CpuBench.run(c, new PrintStream(OutputStream.nullOutputStream()));
      assertTrue(res.verified(), res.verifyNote());

      ExpertMap map = ExpertMap.of(new Topology(nodes, ranks / nodes), experts, p2l);
      Topology topo = map.topology();
      int[][] idx = new int[ranks][];
      int[] tokensOf = new int[ranks];
      for (int r = 0; r < ranks; r++) {
        idx[r] = c.routing(r);
        tokensOf[r] = tokens;
      }
      NaiveReference ref = new NaiveReference(map, idx, tokensOf, topk);
      long[] in = new long[ranks];
      long remote = 0;
      long remoteNode = 0;
      for (int d = 0; d < ranks; d++) {
        for (int row = 0; row < ref.rowsReceivedBy(d); row++) {
          int r = ref.sourceRank(d, row);
          in[d]++;
          if (d != r) remote++;
        }
      }
      // crossing rows: relay, one per token and remote node it has a rank on; direct, one per
      // token-rank pair on another node
      for (int r = 0; r < ranks; r++) {
        for (int t = 0; t < tokens; t++) {
          boolean[] seen = new boolean[nodes];
          for (int d : ref.destinations(r, t)) {
            int m = topo.nodeOf(d);
            if (m == topo.nodeOf(r)) continue;
            if (path == CommConfig.NodePath.DIRECT || !seen[m]) remoteNode++;
            seen[m] = true;
          }
        }
      }
      long max = 0;
      long sum = 0;
      for (long v : in) {
        max = Math.max(max, v);
        sum += v;
      }
      String what = seed + " case " + i + " " + path;
      assertEquals(max, res.rows().receivedMax(), what);
      assertEquals((double) sum / ranks, res.rows().receivedMean(), 1e-9, what);
      assertEquals(remote, res.rows().remote(), what);
      assertEquals(remoteNode, res.rows().remoteNode(), what);
    }
  }
}
