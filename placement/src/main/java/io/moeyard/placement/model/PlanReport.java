package io.moeyard.placement.model;

/**
 * What a planner returns: the placement and, for optimizing planners, how good it is known to be.
 *
 * @param placement the plan
 * @param objective the planner's objective value for {@code placement} (NaN when it has none)
 * @param bound the best proven bound on that objective (NaN when none); gap = |objective - bound| / |objective|
 * @param status solver status in words (e.g. "OPTIMAL", "FEASIBLE", "heuristic")
 * @param seconds wall time spent planning
 */
public record PlanReport(Placement placement, double objective, double bound, String status, double seconds) {
  public double gap() {
    if (Double.isNaN(objective) || Double.isNaN(bound)) return Double.NaN;
    double denom = Math.max(1e-12, Math.abs(objective));
    return Math.abs(objective - bound) / denom;
  }
}
