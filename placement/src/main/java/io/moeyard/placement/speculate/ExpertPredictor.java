package io.moeyard.placement.speculate;

/**
 * How likely each expert of layer l is for one token, given the experts it chose at l-1 and l-2.
 *
 * <p>Each expert a the token chose earlier is one witness: it says P(b | a) / P(b), how much more
 * (or less) often b follows a than b is chosen at all. The witnesses are multiplied, in the log,
 * and tempered: {@code log s(b) = log P(b) + SHARPNESS * sum_a log(P(b | a) / P(b))}, then
 * normalised so the scores sum to 1. The product lets an expert that several of the token's earlier
 * experts point to stand out; the tempering is there because those witnesses are far from
 * independent (a token's six experts of one layer tell much the same story), and an untempered
 * product is overconfident. A mean of the conditionals (a mixture) was the other candidate; it ranked
 * ranks worse on ESFT (bench/results/speculate-2026-12-04.md).
 *
 * <p>Conditionals are smoothed towards the layer's marginal with the weight of one token, so an
 * expert pair never seen in training is unlikely, not impossible. The marginal itself is smoothed
 * by one count per expert, so an expert never seen at all still gets a finite log.
 */
public final class ExpertPredictor {
  /** The temper on the product of witnesses (how it was chosen: bench/results/speculate-2026-12-04.md). */
  public static final double SHARPNESS = 0.25;

  private static final double PSEUDO_TOKENS = 1;

  private final int layers;
  private final int experts;
  private final double[][] logPrior;
  private final float[][][] liftNext;
  private final float[][][] liftSkip;

  public ExpertPredictor(AffinityModel m) {
    layers = m.layers();
    experts = m.experts();
    int E = experts;
    logPrior = new double[layers][E];
    double[][] prior = new double[layers][E];
    liftNext = new float[layers][][];
    liftSkip = new float[layers][][];
    for (int l = 0; l < layers; l++) {
      double sum = 0;
      for (int e = 0; e < E; e++) sum += m.load(l, e) + 1;
      for (int e = 0; e < E; e++) {
        prior[l][e] = (m.load(l, e) + 1) / sum;
        logPrior[l][e] = Math.log(prior[l][e]);
      }
      int layer = l;
      if (l >= 1) liftNext[l] = lift(prior[l], (a, b) -> m.next(layer, a, b));
      if (l >= 2) liftSkip[l] = lift(prior[l], (a, b) -> m.skip(layer, a, b));
    }
  }

  private interface PairCount {
    long get(int a, int b);
  }

  private float[][] lift(double[] prior, PairCount n) {
    int E = experts;
    float[][] out = new float[E][E];
    for (int a = 0; a < E; a++) {
      double rowSum = 0;
      for (int b = 0; b < E; b++) rowSum += n.get(a, b);
      for (int b = 0; b < E; b++) {
        double p = (n.get(a, b) + PSEUDO_TOKENS * prior[b]) / (rowSum + PSEUDO_TOKENS);
        out[a][b] = (float) Math.log(p / prior[b]);
      }
    }
    return out;
  }

  public int layers() {
    return layers;
  }

  public int experts() {
    return experts;
  }

  /**
   * Fills {@code out[0, E)} with the probability of each expert at {@code layer}.
   *
   * @param prev1 the token's distinct experts at {@code layer - 1} ({@code n1} of them; ignored at layer 0)
   * @param prev2 the token's distinct experts at {@code layer - 2} ({@code n2} of them; ignored below layer 2)
   */
  public void scores(int layer, int[] prev1, int n1, int[] prev2, int n2, double[] out) {
    int E = experts;
    System.arraycopy(logPrior[layer], 0, out, 0, E);
    if (layer >= 1) {
      for (int i = 0; i < n1; i++) {
        float[] row = liftNext[layer][prev1[i]];
        for (int b = 0; b < E; b++) out[b] += SHARPNESS * row[b];
      }
    }
    if (layer >= 2) {
      for (int i = 0; i < n2; i++) {
        float[] row = liftSkip[layer][prev2[i]];
        for (int b = 0; b < E; b++) out[b] += SHARPNESS * row[b];
      }
    }
    double max = Double.NEGATIVE_INFINITY;
    for (int b = 0; b < E; b++) max = Math.max(max, out[b]);
    double sum = 0;
    for (int b = 0; b < E; b++) {
      out[b] = Math.exp(out[b] - max);
      sum += out[b];
    }
    for (int b = 0; b < E; b++) out[b] /= sum;
  }
}
