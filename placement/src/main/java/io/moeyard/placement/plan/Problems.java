package io.moeyard.placement.plan;

import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.trace.PairCountsBuilder;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import java.util.List;

/** Builds the {@link PlacementProblem} planners see from one or more traces. */
public final class Problems {
  private Problems() {}

  /**
   * Loads stay per workload (the robust planner needs each one); transitions and co-activations
   * are summed over the per-token traces, because affinity is a property of the model more than of
   * the workload, and more tokens estimate it better. Load-only traces add no affinity; with no
   * per-token trace at all the problem has none.
   */
  public static PlacementProblem fromTraces(List<? extends Trace> traces, int gpus, int nodes, int slots) {
    if (traces.isEmpty()) throw new IllegalArgumentException("no trace given");
    Trace first = traces.get(0);
    int layers = first.layers(), experts = first.experts();
    double[][][] loads = new double[traces.size()][][];
    PairCountsBuilder[] tr = null, co = null;
    for (int w = 0; w < traces.size(); w++) {
      Trace t = traces.get(w);
      if (t.layers() != layers || t.experts() != experts) {
        throw new IllegalArgumentException(t.name() + " has " + t.layers() + " layers x " + t.experts() + " experts, "
            + first.name() + " has " + layers + " x " + experts);
      }
      loads[w] = t.loads();
      if (t instanceof RoutingTrace r) {
        if (tr == null) {
          tr = new PairCountsBuilder[layers - 1];
          co = new PairCountsBuilder[layers];
          for (int l = 0; l < layers - 1; l++) tr[l] = new PairCountsBuilder(experts);
          for (int l = 0; l < layers; l++) co[l] = new PairCountsBuilder(experts);
        }
        PairCounts[] rt = r.transitions(), rc = r.coactivations();
        for (int l = 0; l < layers - 1; l++) tr[l].addAll(rt[l]);
        for (int l = 0; l < layers; l++) co[l].addAll(rc[l]);
      }
    }
    PairCounts[] transitions = null, coactivations = null;
    if (tr != null) {
      transitions = new PairCounts[layers - 1];
      coactivations = new PairCounts[layers];
      for (int l = 0; l < layers - 1; l++) transitions[l] = tr[l].build();
      for (int l = 0; l < layers; l++) coactivations[l] = co[l].build();
    }
    return new PlacementProblem(layers, experts, gpus, nodes, slots, loads, transitions, coactivations);
  }

  /** The same problem with one workload of the given loads {@code [layer][expert]} in place of its own. */
  public static PlacementProblem withLoads(PlacementProblem p, double[][] loads) {
    return new PlacementProblem(p.layers(), p.experts(), p.gpus(), p.nodes(), p.slots(), new double[][][] {loads},
        p.transitions(), p.coactivations());
  }

  /** The same problem without transitions and co-activations: what a planner that balances only sees. */
  public static PlacementProblem withoutAffinity(PlacementProblem p) {
    return new PlacementProblem(p.layers(), p.experts(), p.gpus(), p.nodes(), p.slots(), p.loads(), null, null);
  }

  /** Loads summed over workloads, {@code [layer][expert]}: what EPLB is given for several traces. */
  public static double[][] summedLoads(PlacementProblem p) {
    double[][] out = new double[p.layers()][p.experts()];
    for (double[][] w : p.loads()) {
      for (int l = 0; l < p.layers(); l++) for (int e = 0; e < p.experts(); e++) out[l][e] += w[l][e];
    }
    return out;
  }
}
