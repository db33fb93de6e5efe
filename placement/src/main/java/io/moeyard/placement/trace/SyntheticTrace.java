package io.moeyard.placement.trace;

import java.util.SplittableRandom;

/**
 * Synthetic per-token routing with the two properties placement cares about: skewed expert
 * popularity (what replication and balancing fix) and cross-layer affinity (what co-location
 * exploits). Real traces show both (ESFT: the busiest expert carries 3-5x the mean; a token's
 * expert at one layer predicts the next), and a planner tuned on uniform random routing would
 * learn nothing about either.
 *
 * <p>Model: each layer ranks its experts in a random order and gives rank r the weight
 * {@code 1 / (r + 1)^skew} (Zipf). Cross-layer affinity comes in one of two forms:
 *
 * <ul>
 *   <li><b>chains</b> ({@code domains == 0}): each expert a at layer l has one preferred successor
 *       at l + 1, drawn from layer l + 1's popularity; a token draws its top-k distinct experts at
 *       layer 0 from the popularity, and at each later layer top-k position j follows the successor
 *       of the token's expert at j with probability {@code affinity}, else draws from the
 *       popularity. Only j -> j pairs are tied: k of the k^2 pairs a token makes between layers.
 *   <li><b>domains</b> ({@code domains = D > 0}): every token belongs to one of D domains (its
 *       task or topic), and every layer splits its experts at random into D groups, one per
 *       domain; each of a token's experts comes from its domain's group with probability {@code
 *       affinity} (by popularity within the group), else from the whole layer. A token's whole
 *       expert set is then tied across layers, as in real routing, where experts specialise by
 *       domain (what ESFT's expert-specialised fine-tuning builds on).
 * </ul>
 *
 * Fully determined by the seed.
 */
public final class SyntheticTrace {
  private SyntheticTrace() {}

  /** Parameters; {@code skew} >= 0 (0 = uniform), {@code affinity} in [0, 1], {@code domains} 0 (chains) or 1..experts. */
  public record Spec(int layers, int experts, int topk, int tokens, double skew, double affinity, long seed, int domains) {
    /** The chain model. */
    public Spec(int layers, int experts, int topk, int tokens, double skew, double affinity, long seed) {
      this(layers, experts, topk, tokens, skew, affinity, seed, 0);
    }

    public Spec {
      if (domains < 0 || domains > experts) {
        throw new IllegalArgumentException("domains must be in [0, experts = " + experts + "], got " + domains);
      }
      if (layers <= 0 || experts <= 0 || tokens <= 0 || topk <= 0) {
        throw new IllegalArgumentException("layers, experts, topk and tokens must be positive, got layers=" + layers
            + " experts=" + experts + " topk=" + topk + " tokens=" + tokens);
      }
      if (topk > experts) throw new IllegalArgumentException("topk (" + topk + ") exceeds experts (" + experts + ")");
      if (!(skew >= 0) || Double.isInfinite(skew)) throw new IllegalArgumentException("skew must be >= 0, got " + skew);
      if (!(affinity >= 0 && affinity <= 1)) throw new IllegalArgumentException("affinity must be in [0, 1], got " + affinity);
      if ((long) tokens * layers * topk > Integer.MAX_VALUE - 8) {
        throw new IllegalArgumentException("tokens x layers x topk = " + (long) tokens * layers * topk + " is too large for one trace");
      }
    }
  }

  public static RoutingTrace generate(Spec s) {
    SplittableRandom rnd = new SplittableRandom(s.seed());
    int E = s.experts(), L = s.layers(), K = s.topk(), T = s.tokens();
    double[][] cdf = new double[L][];
    int[][] byRank = new int[L][];
    for (int l = 0; l < L; l++) {
      byRank[l] = permutation(E, rnd);
      cdf[l] = new double[E];
      double acc = 0;
      for (int r = 0; r < E; r++) {
        acc += 1.0 / Math.pow(r + 1, s.skew());
        cdf[l][r] = acc;
      }
      for (int r = 0; r < E; r++) cdf[l][r] /= acc;
    }
    int[][] successor = new int[Math.max(0, L - 1)][E];
    for (int l = 0; l + 1 < L; l++) {
      for (int a = 0; a < E; a++) successor[l][a] = draw(cdf[l + 1], byRank[l + 1], rnd);
    }
    int D = s.domains();
    // domains: group d of layer l holds the experts at positions d, d + D, ... of a random
    // permutation, with their popularity weights
    int[][][] groupMembers = new int[L][D][];
    double[][][] groupCdf = new double[L][D][];
    int[] domain = new int[D > 0 ? T : 0];
    if (D > 0) {
      for (int l = 0; l < L; l++) {
        double[] weight = new double[E];
        for (int r = 0; r < E; r++) weight[byRank[l][r]] = 1.0 / Math.pow(r + 1, s.skew());
        int[] perm = permutation(E, rnd);
        for (int d = 0; d < D; d++) {
          int n = (E - d + D - 1) / D;
          int[] m = new int[n];
          double[] c = new double[n];
          double acc = 0;
          for (int i = 0; i < n; i++) {
            m[i] = perm[d + i * D];
            acc += weight[m[i]];
            c[i] = acc;
          }
          for (int i = 0; i < n; i++) c[i] /= acc;
          groupMembers[l][d] = m;
          groupCdf[l][d] = c;
        }
      }
      for (int t = 0; t < T; t++) domain[t] = rnd.nextInt(D);
    }
    int[] ids = new int[T * L * K];
    boolean[] taken = new boolean[E];
    for (int t = 0; t < T; t++) {
      for (int l = 0; l < L; l++) {
        int base = (t * L + l) * K;
        for (int j = 0; j < K; j++) {
          int e = -1;
          if (D > 0) {
            if (rnd.nextDouble() < s.affinity()) {
              int[] m = groupMembers[l][domain[t]];
              for (int tries = 0; e < 0 && tries < 64; tries++) {
                int cand = draw(groupCdf[l][domain[t]], m, rnd);
                if (!taken[cand]) e = cand;
              }
            }
          } else if (l > 0 && rnd.nextDouble() < s.affinity()) {
            int cand = successor[l - 1][ids[base - K + j]];
            if (!taken[cand]) e = cand;
          }
          for (int tries = 0; e < 0 && tries < 64; tries++) {
            int cand = draw(cdf[l], byRank[l], rnd);
            if (!taken[cand]) e = cand;
          }
          // Heavy skew with large k can make rejection sampling stall; fall back to the most popular free expert.
          for (int r = 0; e < 0; r++) if (!taken[byRank[l][r]]) e = byRank[l][r];
          taken[e] = true;
          ids[base + j] = e;
        }
        for (int j = 0; j < K; j++) taken[ids[base + j]] = false;
      }
    }
    return new RoutingTrace("synthetic(seed=" + s.seed() + ")", T, L, K, E, ids);
  }

  private static int draw(double[] cdf, int[] byRank, SplittableRandom rnd) {
    double u = rnd.nextDouble();
    int lo = 0, hi = cdf.length - 1;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return byRank[lo];
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  static int[] permutation(int n, SplittableRandom rnd) {
    int[] p = new int[n];
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
      int j = rnd.nextInt(i + 1);
      int x = p[i];
      p[i] = p[j];
      p[j] = x;
    }
    return p;
  }
}
