package io.moeyard.engine.transport;

import io.moeyard.engine.DType;
import java.util.function.IntFunction;

/**
 * The checks every collective runs on what the ranks announced, before any byte moves: one rank's
 * own complaint wins (it names the value), then the payload format every rank must share. Every
 * rank runs them on the same announcements, so every rank reaches the same verdict.
 */
public final class Agreement {
  private Agreement() {}

  /**
   * The first problem, or null: a rank's own problem (lowest rank first), else a disagreement on
   * hidden size or dtype between rank 0 and another rank.
   */
  public static String check(int ranks, IntFunction<String> problem, IntFunction<Integer> hidden, IntFunction<DType> dtype) {
    for (int r = 0; r < ranks; r++) {
      String p = problem.apply(r);
      if (p != null) return p;
    }
    for (int r = 1; r < ranks; r++) {
      if (!hidden.apply(r).equals(hidden.apply(0))) {
        return "ranks disagree on hidden size: rank 0 has " + hidden.apply(0) + ", rank " + r + " has " + hidden.apply(r);
      }
      if (dtype.apply(r) != dtype.apply(0)) {
        return "ranks disagree on dtype: rank 0 has " + dtype.apply(0).cliName() + ", rank " + r + " has " + dtype.apply(r).cliName();
      }
    }
    return null;
  }
}
