package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.Workload;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class HostMemoryTest {
  private static BenchConfig config(int ranks, int tokens, int hidden, int experts, int topk) {
    return new BenchConfig(ranks, tokens, hidden, experts, topk, DType.BF16, null, 3, 1, 128, 1);
  }

  @Test
  void expectedRanksPerTokenMatchesSampledRouting() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int[][] shapes = {{8, 64, 8}, {8, 256, 8}, {4, 16, 1}, {2, 8, 8}, {16, 64, 6}};
    for (int[] s : shapes) {
      BenchConfig c = config(s[0], 0, 1, s[1], s[2]);
      int tokens = 20_000;
      int[] idx = Workload.randomRouting(rnd, tokens, s[1], s[2], 0);
      int perRank = s[1] / s[0];
      long distinct = 0;
      for (int t = 0; t < tokens; t++) {
        boolean[] hit = new boolean[s[0]];
        for (int k = 0; k < s[2]; k++) hit[idx[t * s[2] + k] / perRank] = true;
        for (boolean h : hit) if (h) distinct++;
      }
      double sampled = (double) distinct / tokens;
      assertEquals(sampled, HostMemory.expectedRanksPerToken(c), 0.05, seed + " " + java.util.Arrays.toString(s));
    }
  }

  @Test
  void tooLargeARunIsRefusedWithATokenCountThatFits() {
    BenchConfig c = config(8, 4096, 7168, 256, 8);
    long need = HostMemory.benchBytes(c);
    assertNull(HostMemory.problem(c, need * 2));
    assertNull(HostMemory.problem(c, -1), "unknown memory: no verdict");
    String p = HostMemory.problem(c, need / 2);
    assertTrue(p != null && p.contains("GiB") && p.contains("4096 tokens"), p);
    Matcher m = Pattern.compile("--tokens (\\d+) fits").matcher(p);
    assertTrue(m.find(), p);
    int fit = Integer.parseInt(m.group(1));
    BenchConfig smaller = config(8, fit, 7168, 256, 8);
    assertNull(HostMemory.problem(smaller, need / 2), "the suggested size fits");
    assertTrue(fit < 4096);
  }
}
