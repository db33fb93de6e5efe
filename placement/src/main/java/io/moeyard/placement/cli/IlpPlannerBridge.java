package io.moeyard.placement.cli;

import io.moeyard.placement.cost.ReplicaRule;
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
   * Plans for the replica rule the report scores with: {@code UNIFORM} makes every term linear
   * in the replica counts per GPU, {@code NEAREST} is the planner's "some replica local" rule
   * (what each gains: placement/README.md).
   */
  static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options, ReplicaRule rule, Locality locality,
      double balanceSlack) {
    return CpSatPlanner.plan(locality.problem(problem), warmStart, options, tuning(rule, locality, balanceSlack));
  }

  /** {@code --robust unseen}: balance on the forecast, each traced workload capped at the warm start's level. */
  static PlanReport planForUnseen(PlacementProblem problem, double[][] forecast, Placement warmStart, CpSatOptions options,
      ReplicaRule rule, Locality locality, double balanceSlack) {
    return CpSatPlanner.planForUnseen(locality.problem(problem), forecast, warmStart, options,
        tuning(rule, locality, balanceSlack));
  }

  /** The default of {@code --balance-slack}. */
  static double defaultBalanceSlack() {
    return CpSatTuning.defaults().balanceSlack();
  }

  private static CpSatTuning tuning(ReplicaRule rule, Locality locality, double balanceSlack) {
    CpSatTuning d = CpSatTuning.defaults();
    long gpuWeight = locality == Locality.NODE ? 0 : d.gpuWeight();
    long nodeWeight = locality == Locality.NODE ? 1 : d.nodeWeight();
    return new CpSatTuning(balanceSlack, gpuWeight, nodeWeight, d.coactGpuWeight(),
        d.coactNodeWeight(), d.coactPairs(), d.refineFraction(), d.robustReplication(), rule == ReplicaRule.UNIFORM,
        d.localityReplicas());
  }
}
