package io.moeyard.placement.speculate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class CapacityAssignmentTest {
  @Test
  void matchesBruteForceOnSmallInstances() {
    TestSeed base = TestSeed.fresh();
    for (int i = 0; i < 300; i++) {
      long seed = base.value() + i;
      SplittableRandom rnd = new SplittableRandom(seed);
      int T = 1 + rnd.nextInt(7), G = 1 + rnd.nextInt(3);
      double[] score = new double[T * G];
      for (int j = 0; j < score.length; j++) score[j] = rnd.nextInt(4) == 0 ? 0.5 : rnd.nextInt(5) / 4.0;
      int min = rnd.nextInt(T / G + 1), max = Math.max((T + G - 1) / G, (T + G - 1) / G + rnd.nextInt(3));
      String ctx = seed + " T=" + T + " G=" + G + " min=" + min + " max=" + max;
      int[] rank = CapacityAssignment.assign(score, T, G, min, max, null);
      int[] count = new int[G];
      double got = 0;
      for (int t = 0; t < T; t++) {
        count[rank[t]]++;
        got += score[t * G + rank[t]];
      }
      for (int c : count) assertTrue(c >= min && c <= max, ctx);
      // The best over all feasible assignments (and, when floors bind, over those with these counts).
      double bestAny = Double.NEGATIVE_INFINITY, bestSameCounts = Double.NEGATIVE_INFINITY;
      int[] a = new int[T];
      for (long code = 0; code < Math.pow(G, T); code++) {
        long c = code;
        int[] n = new int[G];
        double s = 0;
        for (int t = 0; t < T; t++) {
          a[t] = (int) (c % G);
          c /= G;
          n[a[t]]++;
          s += score[t * G + a[t]];
        }
        boolean ok = true;
        for (int v : n) ok &= v >= min && v <= max;
        if (!ok) continue;
        bestAny = Math.max(bestAny, s);
        if (java.util.Arrays.equals(n, count)) bestSameCounts = Math.max(bestSameCounts, s);
      }
      assertEquals(bestSameCounts, got, 1e-9, ctx);
      if (min == 0) assertEquals(bestAny, got, 1e-9, ctx);
    }
  }

  @Test
  void boundsAreTenPercentOrTheNearestIntegers() {
    assertEquals(90, CapacityAssignment.minTokens(800, 8, 0.1));
    assertEquals(110, CapacityAssignment.maxTokens(800, 8, 0.1));
    assertEquals(0, CapacityAssignment.minTokens(3, 4, 0.1));
    assertEquals(1, CapacityAssignment.maxTokens(3, 4, 0.1));
    assertEquals(2, CapacityAssignment.minTokens(5, 2, 0.1));
    assertEquals(3, CapacityAssignment.maxTokens(5, 2, 0.1));
  }
}
