package io.moeyard.placement.cli;

import io.moeyard.placement.ilp.CpSatPlanner;
import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;

/**
 * ILP-WIRING: the single call site of the CP-SAT planner ({@code --algorithm ilp}). The planner
 * was developed on its own branch; keeping the CLI's one dependency on it here means a build
 * without the ilp package changes this file only: make {@link #available()} return false and
 * {@link #plan} throw {@code new BadInput(UNAVAILABLE)}, and {@code --algorithm ilp} exits with 2
 * and that message while {@code --compare} skips it.
 */
final class IlpPlannerBridge {
  static final String UNAVAILABLE = "ilp planner not built in this version";

  private IlpPlannerBridge() {}

  static boolean available() {
    return true;
  }

  static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options) {
    return CpSatPlanner.plan(problem, warmStart, options);
  }
}
