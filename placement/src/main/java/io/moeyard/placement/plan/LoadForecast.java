package io.moeyard.placement.plan;

import java.util.Locale;

/**
 * The expert loads to plan for when the workload that will run is none of the traced ones: the
 * traces' mean load share, shrunk towards uniform by as much as the traces themselves say a new
 * workload follows their mean.
 *
 * <p>Why shrink: on the ESFT tasks the expert loads of one task are nearly uncorrelated with the
 * others' (per-layer Pearson 0.04-0.23), so a plan fitted to the traced loads concentrates risk on
 * the experts that happen to be hot there, while an unseen workload's hot experts are elsewhere.
 * The traces' mean still carries some signal, and the slope below measures how much.
 *
 * <p>The slope: leave one trace out, predict its per-expert share from the mean share of the
 * others, and fit one least-squares slope {@code beta} through the uniform point over all traces,
 * layers and experts (shares in units of the uniform share, so 1 = an average expert). The
 * forecast is {@code 1 + beta x (mean share - 1)} per expert, in units of the mean workload's
 * tokens. {@code beta} is clamped to [1e-6, 1]: at 1 the forecast is the traces' mean, near 0 it is
 * uniform with the traces' order kept as a tie-break (replicas still go to the historically
 * busiest experts). The fitted slope is conservative: it predicts from the mean of one trace fewer
 * than the forecast uses.
 *
 * @param loads {@code [layer][expert]} forecast tokens per expert, summing per layer to the
 *     traces' mean tokens of that layer
 * @param slope the fitted {@code beta}, clamped
 */
public record LoadForecast(double[][] loads, double slope) {
  static final double MIN_SLOPE = 1e-6;

  /**
   * Forecasts from two or more workloads' loads {@code [workload][layer][expert]}.
   *
   * @throws IllegalArgumentException with fewer than two workloads (nothing to fit the slope on)
   */
  public static LoadForecast of(double[][][] loads) {
    int w = loads.length;
    if (w < 2) throw new IllegalArgumentException("an unseen-workload forecast needs at least 2 traces to fit on, got " + w);
    int layers = loads[0].length, experts = loads[0][0].length;
    // shares in units of the uniform share; a layer with no tokens in some workload is left out
    double[][][] share = new double[w][layers][];
    double[] meanTokens = new double[layers];
    for (int k = 0; k < w; k++) {
      for (int l = 0; l < layers; l++) {
        double total = 0;
        for (double v : loads[k][l]) total += v;
        meanTokens[l] += total / w;
        if (total <= 0) continue;
        share[k][l] = new double[experts];
        for (int e = 0; e < experts; e++) share[k][l][e] = loads[k][l][e] / total * experts;
      }
    }
    double sxy = 0, sxx = 0;
    for (int k = 0; k < w; k++) {
      for (int l = 0; l < layers; l++) {
        if (share[k][l] == null) continue;
        for (int e = 0; e < experts; e++) {
          double m = 0;
          int n = 0;
          for (int j = 0; j < w; j++) {
            if (j == k || share[j][l] == null) continue;
            m += share[j][l][e];
            n++;
          }
          if (n == 0) continue;
          double x = m / n - 1, y = share[k][l][e] - 1;
          sxy += x * y;
          sxx += x * x;
        }
      }
    }
    double beta = sxx > 0 ? sxy / sxx : 0;
    beta = Math.max(MIN_SLOPE, Math.min(1, beta));
    double[][] out = new double[layers][experts];
    for (int l = 0; l < layers; l++) {
      double[] mean = new double[experts];
      int n = 0;
      for (int k = 0; k < w; k++) {
        if (share[k][l] == null) continue;
        for (int e = 0; e < experts; e++) mean[e] += share[k][l][e];
        n++;
      }
      for (int e = 0; e < experts; e++) {
        double m = n == 0 ? 1 : mean[e] / n;
        out[l][e] = (1 + beta * (m - 1)) * meanTokens[l] / experts;
      }
    }
    return new LoadForecast(out, beta);
  }

  /** One line for the report: what the forecast trusts. */
  public String describe() {
    return String.format(Locale.ROOT,
        "unseen-workload forecast: traces' mean load share x %.3f + uniform x %.3f (slope fitted leaving one trace out)",
        slope, 1 - slope);
  }
}
