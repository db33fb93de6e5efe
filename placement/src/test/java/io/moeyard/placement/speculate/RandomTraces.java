package io.moeyard.placement.speculate;

import io.moeyard.placement.trace.RoutingTrace;
import java.util.SplittableRandom;

/** Random routing with the awkward parts real traces have: -1 entries, tokens with no expert at a layer. */
final class RandomTraces {
  private RandomTraces() {}

  /**
   * Routing that follows a hidden per-token group (so there is something to learn), with a share
   * of -1 entries and of tokens that chose nothing at a layer.
   */
  static RoutingTrace routing(SplittableRandom rnd, String name, int tokens, int layers, int topk, int experts) {
    int[] ids = new int[tokens * layers * topk];
    int groups = 1 + rnd.nextInt(4);
    for (int t = 0; t < tokens; t++) {
      int g = rnd.nextInt(groups);
      for (int l = 0; l < layers; l++) {
        boolean none = rnd.nextInt(20) == 0;
        for (int k = 0; k < topk; k++) {
          int i = (t * layers + l) * topk + k;
          if (none || rnd.nextInt(10) == 0) ids[i] = -1;
          else if (rnd.nextInt(3) > 0) ids[i] = Math.floorMod(g * 7 + l * 3 + k, experts);
          else ids[i] = rnd.nextInt(experts);
        }
      }
    }
    return new RoutingTrace(name, tokens, layers, topk, experts, ids);
  }

  /** The first {@code layers} layers of {@code t}. */
  static RoutingTrace prefix(RoutingTrace t, int layers) {
    int T = t.tokens(), L = t.layers(), K = t.topk();
    int[] ids = new int[T * layers * K];
    for (int tok = 0; tok < T; tok++) System.arraycopy(t.ids(), tok * L * K, ids, tok * layers * K, layers * K);
    return new RoutingTrace(t.name() + "[:" + layers + "]", T, layers, K, t.experts(), ids);
  }
}
