package io.moeyard.bench.run;

import io.moeyard.placement.trace.RoutingTrace;

/**
 * Bench routing taken from a measured per-token trace ({@code moeyard bench --trace FILE --layer
 * L}) instead of uniform random experts: real routing is skewed (ESFT's busiest expert carries
 * 3-5x the mean), so ranks receive unequal rows and the collectives are timed on the imbalance
 * an engine really sees. Rank r gets the trace's tokens {@code [r * T, (r + 1) * T)} at one
 * layer, as consecutive sequences would land on one data-parallel rank; -1 entries stay -1
 * (token routed to fewer experts). Weights stay random (traces hold ids only).
 */
public record TraceRouting(String name, RoutingTrace trace, int layer) {
  public TraceRouting {
    if (layer < 0 || layer >= trace.layers()) {
      throw new IllegalArgumentException("--layer must be in [0, " + trace.layers() + ") for " + name + ", got " + layer);
    }
  }

  /** Tokens per rank when --tokens is not given: the whole trace, split evenly. */
  public int tokensPerRank(int ranks) {
    return trace.tokens() / ranks;
  }

  /** Null when {@code c} can run on this trace, else the problem, naming the value. */
  public String problem(BenchConfig c) {
    if (c.experts() != trace.experts()) {
      return "--experts " + c.experts() + " differs from the trace's " + trace.experts() + " experts (" + name + ")";
    }
    if (c.topk() != trace.topk()) return "--topk " + c.topk() + " differs from the trace's top-" + trace.topk() + " (" + name + ")";
    if ((long) c.tokens() * c.ranks() > trace.tokens()) {
      return c.ranks() + " ranks x " + c.tokens() + " tokens exceed the trace's " + trace.tokens() + " tokens (" + name
          + "); at most --tokens " + tokensPerRank(c.ranks());
    }
    return null;
  }

  /** Rank r's {@code [tokens * topk]} expert ids. */
  public int[] rankRouting(int rank, int tokens) {
    int k = trace.topk();
    int[] idx = new int[tokens * k];
    for (int t = 0; t < tokens; t++) {
      int token = rank * tokens + t;
      for (int j = 0; j < k; j++) idx[t * k + j] = trace.expert(token, layer, j);
    }
    return idx;
  }

  /** How the bench's output names this routing: {@code trace law.npy, layer 3}. */
  public String describe() {
    return "trace " + name + ", layer " + layer;
  }
}
