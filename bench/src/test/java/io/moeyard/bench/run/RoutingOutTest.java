package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.DType;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.trace.NpyArray;
import io.moeyard.placement.trace.NpyReader;
import io.moeyard.placement.trace.RoutingTrace;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --routing-out}: the file holds exactly the routing every rank of the bench uses. */
class RoutingOutTest {
  @TempDir Path dir;

  @Test
  void writtenRoutingIsTheBenchRouting() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 6; trial++) {
      // zero tokens only for generated routing: a trace (odd trials) holds at least one token
      int ranks = 1 + rnd.nextInt(8), tokens = trial % 2 == 0 ? rnd.nextInt(40) : 1 + rnd.nextInt(39), topk = 1 + rnd.nextInt(8);
      int experts = ranks * (topk + rnd.nextInt(4));
      BenchConfig c;
      if (trial % 2 == 0) {
        c = new BenchConfig(ranks, tokens, 64, experts, topk, DType.BF16, null, 1, 0, 128, rnd.nextLong());
      } else {
        // a trace with -1 entries (the file keeps them)
        int[] ids = new int[ranks * tokens * 2 * topk];
        for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(5) == 0 ? -1 : rnd.nextInt(experts);
        RoutingTrace t = new RoutingTrace("t", ranks * tokens, 2, topk, experts, ids);
        c = new BenchConfig(ranks, tokens, 64, experts, topk, DType.BF16, null, 1, 0, 128, 1, new TraceRouting("t", t, 1));
      }
      Path f = dir.resolve("routing-" + trial + ".npy");
      c.writeRouting(f);
      NpyArray a = NpyReader.read(f);
      assertArrayEquals(new int[] {ranks, tokens, topk}, a.shape(), seed.toString());
      for (int r = 0; r < ranks; r++) {
        int[] want = c.routing(r);
        int[] got = Arrays.copyOfRange(a.data(), r * tokens * topk, (r + 1) * tokens * topk);
        assertArrayEquals(want, got, seed + " trial " + trial + " rank " + r);
      }
      assertEquals(ranks * tokens * topk, a.data().length);
    }
  }
}
