package io.moeyard.placement.trace;

import io.moeyard.placement.model.PairCounts;

/**
 * Per-token routing {@code [tokens][layers][topk]}: which experts each token chose in each layer,
 * -1 where it chose none (padding, dropped tokens). Kept flat in C order, the layout of the
 * {@code .npy} it came from, because traces reach millions of tokens.
 */
public final class RoutingTrace implements Trace {
  private final String name;
  private final int tokens;
  private final int layers;
  private final int topk;
  private final int experts;
  private final int[] ids;

  /**
   * @param ids {@code [tokens * layers * topk]} in C order; every value in [-1, experts)
   * @throws TraceFormatException naming the first id out of range
   */
  public RoutingTrace(String name, int tokens, int layers, int topk, int experts, int[] ids) {
    if (tokens <= 0 || layers <= 0 || topk <= 0) {
      throw new TraceFormatException(name + ": empty trace (tokens=" + tokens + ", layers=" + layers + ", topk=" + topk + ")");
    }
    if ((long) tokens * layers * topk != ids.length) {
      throw new TraceFormatException(name + ": " + ids.length + " ids do not fill [" + tokens + ", " + layers + ", " + topk + "]");
    }
    if (experts <= 0) throw new TraceFormatException(name + ": experts must be positive, got " + experts);
    for (int i = 0; i < ids.length; i++) {
      int e = ids[i];
      if (e < -1 || e >= experts) {
        int t = i / (layers * topk), l = (i / topk) % layers, k = i % topk;
        throw new TraceFormatException(name + ": expert id " + e + " at token " + t + ", layer " + l + ", slot " + k
            + " is outside [0, " + experts + ") (-1 means none)");
      }
    }
    this.name = name;
    this.tokens = tokens;
    this.layers = layers;
    this.topk = topk;
    this.experts = experts;
    this.ids = ids;
  }

  /** Builds a trace from a 3-D {@code .npy} array; {@code experts <= 0} takes the largest id + 1. */
  public static RoutingTrace of(String name, NpyArray a, int experts) {
    int[] s = a.shape();
    if (s.length != 3) {
      throw new TraceFormatException(name + ": routing trace must be 3-D [tokens, layers, topk], got shape "
          + java.util.Arrays.toString(s));
    }
    int e = experts > 0 ? experts : maxId(a.data()) + 1;
    if (e <= 0) throw new TraceFormatException(name + ": no token was routed to any expert (all ids are -1)");
    return new RoutingTrace(name, s[0], s[1], s[2], e, a.data());
  }

  static int maxId(int[] data) {
    int m = -1;
    for (int v : data) m = Math.max(m, v);
    return m;
  }

  @Override
  public String name() {
    return name;
  }

  public int tokens() {
    return tokens;
  }

  @Override
  public int layers() {
    return layers;
  }

  public int topk() {
    return topk;
  }

  @Override
  public int experts() {
    return experts;
  }

  /** Expert chosen by {@code token} in {@code layer} at top-k position {@code k}, or -1. */
  public int expert(int token, int layer, int k) {
    return ids[(token * layers + layer) * topk + k];
  }

  /** The raw ids, C order; shared, not copied. */
  public int[] ids() {
    return ids;
  }

  @Override
  public double[][] loads() {
    double[][] out = new double[layers][experts];
    for (int t = 0; t < tokens; t++) {
      int base = t * layers * topk;
      for (int l = 0; l < layers; l++) {
        for (int k = 0; k < topk; k++) {
          int e = ids[base + l * topk + k];
          if (e >= 0) out[l][e]++;
        }
      }
    }
    return out;
  }

  /**
   * Layer-to-layer transitions, {@code [layer pair l -> l + 1]}: for each token, every (a, b)
   * with a among its experts at l and b among its experts at l + 1 counts once, so a token adds
   * up to topk^2 pairs. That is the traffic a token's hidden state makes when it leaves expert a's
   * GPU for expert b's.
   */
  public PairCounts[] transitions() {
    PairCounts[] out = new PairCounts[layers - 1];
    for (int l = 0; l + 1 < layers; l++) {
      PairCountsBuilder b = new PairCountsBuilder(experts);
      for (int t = 0; t < tokens; t++) {
        int base = (t * layers + l) * topk;
        for (int i = 0; i < topk; i++) {
          int a = ids[base + i];
          if (a < 0) continue;
          for (int j = 0; j < topk; j++) {
            int c = ids[base + topk + j];
            if (c >= 0) b.add(a, c, 1);
          }
        }
      }
      out[l] = b.build();
    }
    return out;
  }

  /** Same-layer co-activation, {@code [layer]}: pairs a &lt; b that one token chose together. */
  public PairCounts[] coactivations() {
    PairCounts[] out = new PairCounts[layers];
    for (int l = 0; l < layers; l++) {
      PairCountsBuilder b = new PairCountsBuilder(experts);
      for (int t = 0; t < tokens; t++) {
        int base = (t * layers + l) * topk;
        for (int i = 0; i < topk; i++) {
          int a = ids[base + i];
          if (a < 0) continue;
          for (int j = i + 1; j < topk; j++) {
            int c = ids[base + j];
            if (c < 0 || c == a) continue;
            b.add(Math.min(a, c), Math.max(a, c), 1);
          }
        }
      }
      out[l] = b.build();
    }
    return out;
  }
}
