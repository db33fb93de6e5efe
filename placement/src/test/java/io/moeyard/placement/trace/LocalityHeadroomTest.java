package io.moeyard.placement.trace;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.placement.model.PairCounts;
import org.junit.jupiter.api.Test;

class LocalityHeadroomTest {
  /** Four experts per layer in two fixed chains (0,1 -> 0,1 and 2,3 -> 2,3): a 2-way split keeps every transition. */
  @Test
  void separableTraceIsFullyLocalAndConcentrated() {
    PairCounts chain = new PairCounts(new int[] {0, 1, 2, 3, 0, 2}, new int[] {1, 0, 3, 2, 0, 2}, new long[] {5, 5, 5, 5, 3, 3});
    PairCounts[] t = {chain, chain, chain};
    assertEquals(0.0, LocalityHeadroom.crossFraction(t, 4, 2, 3, 1, Long.MAX_VALUE), 1e-12);
    assertTrue(LocalityHeadroom.crossFraction(t, 4, 4, 3, 1, Long.MAX_VALUE) > 0, "one expert per group splits every chain");
    assertEquals(1.0, LocalityHeadroom.topSuccessorShare(t, 4, 2), 1e-12);
    assertEquals(20.0 / 26, LocalityHeadroom.topSuccessorShare(t, 4, 1), 1e-12);
  }

  /** Uniform all-to-all transitions: no split beats a random one (equal groups: (G-1)/G cross). */
  @Test
  void uniformTraceHasNoHeadroom() {
    int e = 8;
    int[] a = new int[e * e], b = new int[e * e];
    long[] c = new long[e * e];
    for (int i = 0; i < e * e; i++) {
      a[i] = i / e;
      b[i] = i % e;
      c[i] = 7;
    }
    PairCounts[] t = {new PairCounts(a, b, c), new PairCounts(a, b, c)};
    assertEquals(0.5, LocalityHeadroom.crossFraction(t, e, 2, 2, 3, Long.MAX_VALUE), 1e-12);
    assertEquals(0.75, LocalityHeadroom.crossFraction(t, e, 4, 2, 3, Long.MAX_VALUE), 1e-12);
    assertEquals(5.0 / 8, LocalityHeadroom.topSuccessorShare(t, e, 5), 1e-12);
  }
}
