package io.moeyard.placement.trace;

import io.moeyard.placement.model.PairCounts;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What a trace says before any placement: per layer, how uneven the experts are and which expert
 * pairs tokens use together (same layer) or in sequence (layer to layer). The first tells whether
 * replication will pay, the second whether co-location can.
 */
public final class TraceStats {
  private TraceStats() {}

  /**
   * One layer's summary.
   *
   * @param imbalance busiest expert's load / mean expert load
   * @param topCoactivations the most frequent same-layer pairs, heaviest first (empty for load-only)
   * @param topTransitions the most frequent pairs from this layer to the next (empty for the last
   *     layer and for load-only traces)
   */
  public record LayerStats(int layer, double total, double mean, double max, int hottest, double imbalance,
      List<long[]> topCoactivations, List<long[]> topTransitions) {}

  public static List<LayerStats> compute(Trace trace, int top) {
    double[][] loads = trace.loads();
    PairCounts[] co = null, tr = null;
    if (trace instanceof RoutingTrace r) {
      co = r.coactivations();
      tr = r.transitions();
    }
    List<LayerStats> out = new ArrayList<>();
    for (int l = 0; l < trace.layers(); l++) {
      double total = 0, max = -1;
      int hot = 0;
      for (int e = 0; e < trace.experts(); e++) {
        total += loads[l][e];
        if (loads[l][e] > max) {
          max = loads[l][e];
          hot = e;
        }
      }
      double mean = total / trace.experts();
      out.add(new LayerStats(l, total, mean, max, hot, mean == 0 ? 1 : max / mean,
          co == null ? List.of() : top(co[l], top),
          tr == null || l >= tr.length ? List.of() : top(tr[l], top)));
    }
    return out;
  }

  /** The {@code n} largest pairs as {@code {from, to, count}}, ties by (from, to) for stable output. */
  public static List<long[]> top(PairCounts p, int n) {
    List<long[]> all = new ArrayList<>(p.size());
    for (int i = 0; i < p.size(); i++) all.add(new long[] {p.from()[i], p.to()[i], p.count()[i]});
    all.sort((x, y) -> x[2] != y[2] ? Long.compare(y[2], x[2]) : x[0] != y[0] ? Long.compare(x[0], y[0]) : Long.compare(x[1], y[1]));
    return all.subList(0, Math.min(n, all.size()));
  }

  /** A table for people: one row per layer. */
  public static String render(Trace trace, int top) {
    List<LayerStats> st = compute(trace, top);
    StringBuilder sb = new StringBuilder();
    String kind = trace instanceof RoutingTrace r
        ? "per-token routing, " + r.tokens() + " tokens, top-" + r.topk()
        : "load-only (logical_count)";
    sb.append(String.format(Locale.ROOT, "%s: %d layers, %d experts, %s%n", trace.name(), trace.layers(), trace.experts(), kind));
    sb.append(String.format(Locale.ROOT, "%5s %10s %9s %9s %7s %9s  %-30s %-30s%n",
        "layer", "selections", "mean", "max", "hot", "max/mean", "top co-activations a+b:n", "top transitions a->b:n"));
    double imbSum = 0, imbMax = 0;
    for (LayerStats s : st) {
      imbSum += s.imbalance();
      imbMax = Math.max(imbMax, s.imbalance());
      sb.append(String.format(Locale.ROOT, "%5d %10.0f %9.1f %9.0f %7d %9.2f  %-30s %-30s%n",
          s.layer(), s.total(), s.mean(), s.max(), s.hottest(), s.imbalance(),
          pairs(s.topCoactivations(), "+"), pairs(s.topTransitions(), "->")));
    }
    sb.append(String.format(Locale.ROOT, "imbalance (busiest expert / mean): mean %.2f, worst %.2f%n", imbSum / st.size(), imbMax));
    return sb.toString();
  }

  private static String pairs(List<long[]> ps, String sep) {
    if (ps.isEmpty()) return "-";
    StringBuilder sb = new StringBuilder();
    for (long[] p : ps) {
      if (!sb.isEmpty()) sb.append(' ');
      sb.append(p[0]).append(sep).append(p[1]).append(':').append(p[2]);
    }
    return sb.toString();
  }
}
