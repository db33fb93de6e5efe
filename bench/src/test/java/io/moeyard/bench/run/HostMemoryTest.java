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

  /** Rank processes each hold every rank's inputs: more than threads, growing with the processes on the machine. */
  @Test
  void rankProcessesCountEveryRanksInputsOncePerProcess() {
    BenchConfig c = config(8, 4096, 7168, 256, 8);
    long threads = HostMemory.benchBytes(c);
    long one = HostMemory.benchBytes(c, 1);
    long eight = HostMemory.benchBytes(c, 8);
    assertEquals(threads, HostMemory.benchBytes(c, 0));
    assertTrue(one < threads, "one process holds one rank's buffers: " + one + " vs " + threads);
    assertEquals(8.0 * one, eight, 8.0, "eight processes hold eight times one");
    assertTrue(eight > threads, "eight processes hold every input eight times: " + eight + " vs " + threads);
    // x (4096 x 7168 bf16) and the expert outputs (4096 x 8 rows) of all 8 ranks, in each of the 8 processes
    double inputs = 8.0 * (4096.0 * 7168 * 2 + 4096.0 * 8 * 7168 * 2);
    assertTrue(eight - threads > 7 * inputs * 0.99, "the inputs beyond the threads' count: " + (eight - threads));
    String p = HostMemory.problem(c, threads * 2, 8);
    assertTrue(p != null && p.contains("8 rank processes here"), "threads fit, eight processes do not: " + p);
    assertNull(HostMemory.problem(c, threads * 2));
  }
}
