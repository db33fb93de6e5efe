package io.moeyard.placement.cli;

import io.moeyard.placement.model.CpSatOptions;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.model.PlanReport;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;

/**
 * ILP-WIRING: the single call site of {@code io.moeyard.placement.ilp.CpSatPlanner.plan}. The
 * CP-SAT planner is developed on its own branch; looking it up by name lets this module build and
 * ship without it, and pick it up unchanged once that package is merged. At merge time this can
 * become a direct call.
 */
final class IlpPlannerBridge {
  static final String UNAVAILABLE = "ilp planner not built in this version";
  private static final String CLASS = "io.moeyard.placement.ilp.CpSatPlanner";

  private IlpPlannerBridge() {}

  static boolean available() {
    return method() != null;
  }

  static PlanReport plan(PlacementProblem problem, Placement warmStart, CpSatOptions options) {
    Method m = method();
    if (m == null) throw new BadInput(UNAVAILABLE);
    try {
      return (PlanReport) m.invoke(null, problem, warmStart, options);
    } catch (InvocationTargetException e) {
      if (e.getCause() instanceof RuntimeException r) throw r;
      if (e.getCause() instanceof Error er) throw er;
      throw new IllegalStateException(e.getCause());
    } catch (IllegalAccessException e) {
      throw new IllegalStateException(e);
    }
  }

  private static Method method() {
    try {
      return Class.forName(CLASS).getMethod("plan", PlacementProblem.class, Placement.class, CpSatOptions.class);
    } catch (ClassNotFoundException | NoSuchMethodException e) {
      return null;
    }
  }
}
