package io.moeyard.placement.trace;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.placement.model.PairCounts;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SyntheticTraceTest {
  private static SyntheticTrace.Spec spec(double skew, double affinity, long seed) {
    return new SyntheticTrace.Spec(6, 32, 4, 4000, skew, affinity, seed);
  }

  @Test
  void sameSeedSameTraceAndDistinctExpertsPerToken() {
    RoutingTrace a = SyntheticTrace.generate(spec(0.8, 0.5, 7));
    RoutingTrace b = SyntheticTrace.generate(spec(0.8, 0.5, 7));
    assertArrayEquals(a.ids(), b.ids());
    assertNotEquals(java.util.Arrays.hashCode(a.ids()), java.util.Arrays.hashCode(SyntheticTrace.generate(spec(0.8, 0.5, 8)).ids()));
    for (int t = 0; t < a.tokens(); t++) {
      for (int l = 0; l < a.layers(); l++) {
        Set<Integer> s = new HashSet<>();
        for (int k = 0; k < a.topk(); k++) assertTrue(s.add(a.expert(t, l, k)), "token " + t + " layer " + l);
      }
    }
  }

  @Test
  void skewMakesHotExperts() {
    double flat = meanImbalance(SyntheticTrace.generate(spec(0, 0, 3)));
    double skewed = meanImbalance(SyntheticTrace.generate(spec(1.0, 0, 3)));
    assertTrue(flat < 1.3, "uniform popularity should be near-balanced, got " + flat);
    assertTrue(skewed > 2.5, "Zipf 1.0 over 32 experts should give hot experts, got " + skewed);
  }

  @Test
  void affinityConcentratesTransitions() {
    double none = topPairShare(SyntheticTrace.generate(spec(0.3, 0, 5)));
    double strong = topPairShare(SyntheticTrace.generate(spec(0.3, 0.9, 5)));
    assertTrue(strong > 2 * none, "affinity 0.9 should concentrate transitions: " + none + " vs " + strong);
  }

  @Test
  void presetsHaveTheirShapes() {
    ModelPreset p = ModelPreset.byId("deepseek-v3");
    assertEquals(58, p.layers);
    assertEquals(256, p.experts);
    assertEquals(8, p.topk);
    assertEquals(64, ModelPreset.byId("ESFT-LITE").experts);
    assertThrows(IllegalArgumentException.class, () -> ModelPreset.byId("gpt-5"));
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTrace.Spec(2, 4, 5, 10, 1, 0, 1));
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTrace.Spec(2, 4, 2, 10, 1, 1.5, 1));
  }

  private static double meanImbalance(RoutingTrace t) {
    double s = 0;
    for (TraceStats.LayerStats l : TraceStats.compute(t, 0)) s += l.imbalance();
    return s / t.layers();
  }

  /** Share of transitions carried by each source expert's most frequent successor. */
  private static double topPairShare(RoutingTrace t) {
    PairCounts p = t.transitions()[2];
    long[] best = new long[t.experts()];
    for (int i = 0; i < p.size(); i++) best[p.from()[i]] = Math.max(best[p.from()[i]], p.count()[i]);
    long s = 0;
    for (long b : best) s += b;
    return (double) s / p.total();
  }
}
