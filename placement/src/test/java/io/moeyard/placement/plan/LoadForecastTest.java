package io.moeyard.placement.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Test;

class LoadForecastTest {
  /**
   * Workloads whose shares all lie on one line through the uniform point, share_k = 1 + a_k d:
   * leaving k out, the others' mean is 1 + mean(a_-k) d, so the least-squares slope is
   * sum_k a_k mean(a_-k) / sum_k mean(a_-k)^2, whatever d is.
   */
  @RepeatedTest(20)
  void slopeMatchesTheClosedFormOnSharesAlongOneDirection() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom r = seed.random();
    int w = 2 + r.nextInt(4), layers = 1 + r.nextInt(4), experts = 2 + r.nextInt(30);
    double[][] d = new double[layers][experts];
    for (double[] dl : d) {
      double s = 0;
      for (int e = 0; e < experts; e++) s += dl[e] = r.nextDouble(-1, 1);
      for (int e = 0; e < experts; e++) dl[e] -= s / experts; // shares keep summing to E
    }
    double[] a = new double[w];
    for (int k = 0; k < w; k++) a[k] = r.nextDouble(0, 0.9);
    double[][][] loads = new double[w][layers][experts];
    for (int k = 0; k < w; k++) {
      double tokens = 100 + r.nextInt(10_000);
      for (int l = 0; l < layers; l++) for (int e = 0; e < experts; e++) loads[k][l][e] = (1 + a[k] * d[l][e]) * tokens / experts;
    }
    double num = 0, den = 0;
    for (int k = 0; k < w; k++) {
      double m = 0;
      for (int j = 0; j < w; j++) if (j != k) m += a[j] / (w - 1);
      num += a[k] * m;
      den += m * m;
    }
    double expected = Math.max(LoadForecast.MIN_SLOPE, Math.min(1, num / den));
    LoadForecast f = LoadForecast.of(loads);
    assertEquals(expected, f.slope(), 1e-9, seed.toString());
    for (int l = 0; l < layers; l++) {
      double meanTokens = 0, sum = 0;
      for (int k = 0; k < w; k++) for (double v : loads[k][l]) meanTokens += v / w;
      double abar = 0;
      for (double ak : a) abar += ak / w;
      for (int e = 0; e < experts; e++) {
        sum += f.loads()[l][e];
        double want = (1 + f.slope() * abar * d[l][e]) * meanTokens / experts;
        assertEquals(want, f.loads()[l][e], 1e-9 * meanTokens, seed + " layer " + l + " expert " + e);
      }
      assertEquals(meanTokens, sum, 1e-9 * meanTokens, "forecast keeps the mean tokens, seed " + seed);
    }
  }

  @Test
  void identicalWorkloadsAreTrustedFully() {
    double[][][] loads = {{{5, 1, 1, 1}, {0, 2, 2, 4}}, {{10, 2, 2, 2}, {0, 1, 1, 2}}};
    LoadForecast f = LoadForecast.of(loads);
    assertEquals(1.0, f.slope(), 1e-12);
    assertEquals(12.0 * 5 / 8, f.loads()[0][0], 1e-12, "mean tokens 12 x share 5 / 8");
    assertEquals(0.0, f.loads()[1][0], 1e-12);
  }

  @Test
  void opposedWorkloadsGiveUniformWithTheMeanOrderAsTieBreak() {
    // one task's hot expert is the other's cold one: the mean predicts nothing, slope clamps to ~0
    double[][][] loads = {{{9, 1, 4, 6}}, {{1, 9, 6, 4}}, {{5, 5, 6, 4}}};
    LoadForecast f = LoadForecast.of(loads);
    assertEquals(LoadForecast.MIN_SLOPE, f.slope(), 0);
    double[] row = f.loads()[0];
    for (double v : row) assertEquals(5.0, v, 1e-4);
    assertTrue(row[2] > row[3], "expert 2's mean share is higher, the forecast keeps that order");
  }

  @Test
  void layersWithoutTokensAreSkippedAndOneWorkloadIsRefused() {
    double[][][] loads = {{{3, 1}, {0, 0}}, {{6, 2}, {4, 4}}, {{3, 1}, {1, 3}}};
    LoadForecast f = LoadForecast.of(loads);
    // layer 0 agrees fully (sxy = sxx = 1.5); in layer 1 workload 0 has no tokens, so leaving out
    // workload 1 predicts it from workload 2 alone (x = -+0.5, y = 0) and workload 2 from workload
    // 1 (x = 0): slope 1.5 / 2
    assertEquals(0.75, f.slope(), 1e-12);
    // layer 1: mean share of workloads 1 and 2 (0.75, 1.25), mean tokens (0 + 8 + 4) / 3 = 4
    assertEquals((1 - 0.75 * 0.25) * 2, f.loads()[1][0], 1e-12);
    assertEquals((1 + 0.75 * 0.25) * 2, f.loads()[1][1], 1e-12);
    var e = assertThrows(IllegalArgumentException.class, () -> LoadForecast.of(new double[][][] {{{1, 2}}}));
    assertTrue(e.getMessage().contains("at least 2 traces"), e.getMessage());
  }
}
