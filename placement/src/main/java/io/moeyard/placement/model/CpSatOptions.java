package io.moeyard.placement.model;

import java.util.function.Consumer;

/**
 * Options of the CP-SAT planner ({@code --algorithm ilp}).
 *
 * @param timeLimitSeconds total wall-clock budget over all sub-problems
 * @param workers CP-SAT search workers (0 = number of available processors)
 * @param seed solver random seed, for reproducible plans
 * @param progress receives one human-readable line per finished sub-problem (may be null)
 */
public record CpSatOptions(double timeLimitSeconds, int workers, int seed, Consumer<String> progress) {
  public static CpSatOptions defaults() {
    return new CpSatOptions(60, 0, 1, null);
  }
}
