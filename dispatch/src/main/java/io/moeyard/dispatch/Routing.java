package io.moeyard.dispatch;

import java.util.Objects;

/**
 * One rank's gate output: for each of its {@code tokens} tokens, {@code topk} logical expert ids
 * ({@code -1} = this choice is not routed, e.g. dropped or padded) and their weights, row-major
 * {@code [tokens][topk]}. The arrays are read, never written, and must not change during a call.
 */
public record Routing(int tokens, int topk, int[] topkIdx, float[] topkWeights) {
  public Routing {
    Objects.requireNonNull(topkIdx, "topkIdx");
    Objects.requireNonNull(topkWeights, "topkWeights");
  }

  /**
   * Checks this routing against {@code experts} logical experts and returns a message naming the
   * first bad value, or null. Returned, not thrown, because a collective must tell every rank
   * before anyone throws.
   */
  public String problem(int experts) {
    if (tokens < 0) return "tokens must be >= 0, got " + tokens;
    if (topk <= 0) return "topk must be > 0, got " + topk;
    long need = (long) tokens * topk;
    if (topkIdx.length != need) {
      return "topkIdx has " + topkIdx.length + " entries, expected tokens x topk = " + tokens + " x " + topk + " = " + need;
    }
    if (topkWeights.length != need) {
      return "topkWeights has " + topkWeights.length + " entries, expected tokens x topk = " + need;
    }
    for (int t = 0; t < tokens; t++) {
      int base = t * topk;
      for (int k = 0; k < topk; k++) {
        int e = topkIdx[base + k];
        if (e == -1) continue;
        if (e < 0 || e >= experts) {
          return "topkIdx[" + t + "][" + k + "] = " + e + " is outside [0, " + experts + ") (use -1 for 'not routed')";
        }
        float w = topkWeights[base + k];
        if (!Float.isFinite(w)) return "topkWeights[" + t + "][" + k + "] = " + w + " is not finite";
        for (int k2 = 0; k2 < k; k2++) {
          if (topkIdx[base + k2] == e) {
            return "topkIdx[" + t + "] selects expert " + e + " twice (k = " + k2 + " and k = " + k + ")";
          }
        }
      }
    }
    return null;
  }
}
