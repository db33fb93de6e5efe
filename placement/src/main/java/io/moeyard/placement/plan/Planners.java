package io.moeyard.placement.plan;

import io.moeyard.placement.eplb.Eplb;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;

/** The planners that need no solver. */
public final class Planners {
  private Planners() {}

  /**
   * Slot p holds expert p mod E: what an engine does with no plan (the identity map) plus, for
   * extra slots, replicas of the lowest ids. The zero point every plan is compared with.
   */
  public static Placement trivial(PlacementProblem p) {
    int[][] phy2log = new int[p.layers()][p.slots()];
    for (int l = 0; l < p.layers(); l++) for (int s = 0; s < p.slots(); s++) phy2log[l][s] = s % p.experts();
    return new Placement(p.experts(), p.gpus(), phy2log);
  }

  /** EPLB on the loads summed over workloads (see {@link io.moeyard.placement.eplb}). */
  public static Placement eplb(PlacementProblem p, int groups) {
    return Eplb.rebalance(Problems.summedLoads(p), p.slots(), groups, p.nodes(), p.gpus());
  }

  public static PlanReport timed(String status, java.util.function.Supplier<Placement> planner) {
    long t0 = System.nanoTime();
    Placement pl = planner.get();
    return new PlanReport(pl, Double.NaN, Double.NaN, status, (System.nanoTime() - t0) / 1e9);
  }
}
