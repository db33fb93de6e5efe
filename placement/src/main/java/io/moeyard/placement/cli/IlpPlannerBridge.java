package io.moeyard.placement.cli;

import io.moeyard.placement.ilp.CpSatPlanner;
import io.moeyard.placement.ilp.CpSatTuning;
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

  /**
   * The report scores transitions with the cost model's rule (each replica equally likely), so
   * the planner optimises that same rule here; measured on ESFT it cuts cross-node transitions
   * under that rule by 32% where the planner's default ("some replica local") rule gets 12%.
   */
  static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options) {
    CpSatTuning d = CpSatTuning.defaults();
    CpSatTuning reportRule = new CpSatTuning(d.balanceSlack(), d.gpuWeight(), d.nodeWeight(), d.coactGpuWeight(),
        d.coactNodeWeight(), d.coactPairs(), d.refineFraction(), d.robustReplication(), true);
    return CpSatPlanner.plan(problem, warmStart, options, reportRule);
  }
}
