package io.moeyard.placement.cli;

import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.plan.Problems;
import java.util.Locale;

/**
 * {@code --locality}: which transitions the ilp planner tries to keep local, traded against how
 * well the plan balances a workload it was not planned on. Keeping the experts a token travels
 * between together also stacks experts that fire together, so a new workload that uses them
 * loads one GPU (GPU) or one node's GPUs (NODE) more; measured on ESFT, see placement/README.md.
 */
enum Locality {
  /** Transitions that change GPU cost 1, those that also change node 1 more (the default). */
  GPU,
  /** Only transitions that change node cost: GPUs within a node are left to balance. */
  NODE,
  /** Balance only: the planner sees no transitions. */
  NONE;

  static Locality byId(String id) {
    for (Locality l : values()) if (l.name().equalsIgnoreCase(id)) return l;
    throw new IllegalArgumentException("--locality " + id + " is not one of gpu, node, none");
  }

  String id() {
    return name().toLowerCase(Locale.ROOT);
  }

  PlacementProblem problem(PlacementProblem p) {
    return this == NONE ? Problems.withoutAffinity(p) : p;
  }
}
