package io.moeyard.placement.trace;

import io.moeyard.engine.ModelPreset;
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
  void domainsTieATokensWholeExpertSet() {
    // 4 domains over 32 experts: groups of 8. With affinity 1 every expert of a token comes from
    // its domain's group, so an expert is only ever co-activated with the 7 others of its group.
    RoutingTrace tied = SyntheticTrace.generate(new SyntheticTrace.Spec(5, 32, 4, 3000, 0.6, 1.0, 9, 4));
    RoutingTrace free = SyntheticTrace.generate(new SyntheticTrace.Spec(5, 32, 4, 3000, 0.6, 0.0, 9, 4));
    for (int l = 0; l < 5; l++) {
      assertTrue(maxPartners(tied, l) <= 7, "layer " + l + ": " + maxPartners(tied, l) + " partners");
      assertTrue(maxPartners(free, l) > 20, "layer " + l + ": " + maxPartners(free, l) + " partners");
    }
    assertArrayEquals(tied.ids(), SyntheticTrace.generate(new SyntheticTrace.Spec(5, 32, 4, 3000, 0.6, 1.0, 9, 4)).ids());
    for (int t = 0; t < tied.tokens(); t++) {
      for (int l = 0; l < tied.layers(); l++) {
        Set<Integer> s = new HashSet<>();
        for (int k = 0; k < tied.topk(); k++) assertTrue(s.add(tied.expert(t, l, k)), "token " + t + " layer " + l);
      }
    }
    // a token's domain holds across layers: each layer-1 group sends its tokens to one layer-2 group
    int[] g1 = groups(tied, 1), g2 = groups(tied, 2);
    PairCounts tr = tied.transitions()[1];
    int[] target = new int[tied.experts()];
    java.util.Arrays.fill(target, -1);
    for (int i = 0; i < tr.size(); i++) {
      int from = g1[tr.from()[i]], to = g2[tr.to()[i]];
      assertTrue(target[from] < 0 || target[from] == to, "layer-1 group " + from + " reaches two layer-2 groups");
      target[from] = to;
    }
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTrace.Spec(2, 4, 2, 10, 1, 0.5, 1, 5));
    assertThrows(IllegalArgumentException.class, () -> new SyntheticTrace.Spec(2, 4, 2, 10, 1, 0.5, 1, -1));
  }

  /** Most distinct experts any one expert of layer l is co-activated with. */
  private static int maxPartners(RoutingTrace t, int l) {
    PairCounts c = t.coactivations()[l];
    int[] n = new int[t.experts()];
    for (int i = 0; i < c.size(); i++) {
      n[c.from()[i]]++;
      n[c.to()[i]]++;
    }
    int max = 0;
    for (int v : n) max = Math.max(max, v);
    return max;
  }

  /** Group id (a representative expert) of every expert at layer l, from its co-activations. */
  private static int[] groups(RoutingTrace t, int l) {
    int[] comp = new int[t.experts()];
    for (int e = 0; e < comp.length; e++) comp[e] = e;
    PairCounts c = t.coactivations()[l];
    for (int i = 0; i < c.size(); i++) union(comp, c.from()[i], c.to()[i]);
    for (int e = 0; e < comp.length; e++) comp[e] = find(comp, e);
    return comp;
  }

  private static int find(int[] p, int x) {
    while (p[x] != x) x = p[x] = p[p[x]];
    return x;
  }

  private static void union(int[] p, int a, int b) {
    p[find(p, a)] = find(p, b);
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
