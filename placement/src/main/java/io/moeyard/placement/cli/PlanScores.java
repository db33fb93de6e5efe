package io.moeyard.placement.cli;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.cost.DispatchCost;
import io.moeyard.placement.cost.DispatchModel;
import io.moeyard.placement.cost.Network;
import io.moeyard.placement.cost.PlacementScore;
import io.moeyard.placement.cost.ReplicaRule;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.List;

/**
 * What {@code moeyard plan} reports for one plan on one set of traces: the aggregate score
 * (balancedness, transitions by the replica rule) and, when the traces are per-token, the dispatch
 * replay summed over them, in total and per layer.
 *
 * @param score balance and transitions ({@link CostModel})
 * @param replayed whether any trace was per-token (else the dispatch fields are zero)
 * @param intraBytes NVLink bytes, summed over traces and layers
 * @param interBytes network bytes, the same
 * @param seconds estimated all-to-all time, the same
 * @param layerIntra per layer, summed over traces
 * @param layerInter per layer, summed over traces
 * @param layerSeconds per layer, summed over traces
 */
record PlanScores(PlacementScore score, boolean replayed, long intraBytes, long interBytes, double seconds, long[] layerIntra,
    long[] layerInter, double[] layerSeconds) {

  /** Scores {@code plan}; {@code layerDone} ticks once per trace and layer replayed. */
  static PlanScores of(PlacementProblem problem, Placement plan, ReplicaRule rule, List<RoutingTrace> routing, Network net,
      Runnable layerDone) {
    PlacementScore s = CostModel.score(problem, plan, rule);
    int L = problem.layers();
    long[] layerIntra = new long[L], layerInter = new long[L];
    double[] layerSec = new double[L];
    long intra = 0, inter = 0;
    double sec = 0;
    for (RoutingTrace t : routing) {
      DispatchCost d = DispatchModel.replay(t, plan, net, l -> layerDone.run());
      intra += d.intraBytes();
      inter += d.interBytes();
      sec += d.seconds();
      for (int l = 0; l < L; l++) {
        layerIntra[l] += d.layers()[l].intraBytes();
        layerInter[l] += d.layers()[l].interBytes();
        layerSec[l] += d.layers()[l].seconds();
      }
    }
    return new PlanScores(s, !routing.isEmpty(), intra, inter, sec, layerIntra, layerInter, layerSec);
  }
}
