package io.moeyard.placement.model;

import java.util.Objects;

/**
 * Everything a planner may look at: the shape of the cluster and what the routing trace(s) say.
 *
 * @param layers MoE layers L
 * @param experts logical experts per layer E
 * @param gpus GPUs (EP ranks) G; slots are GPU-major: slot p lives on GPU p / (slots / gpus)
 * @param nodes nodes N; GPU g lives on node g / (gpus / nodes)
 * @param slots physical slots per layer P = E + redundant replicas, a multiple of G
 * @param loads {@code [workload][layer][expert]} tokens routed to each logical expert; one
 *     workload per trace given (robust planning takes the worst over workloads)
 * @param transitions {@code [layer]} for layer l in [0, L-1): tokens whose experts were a at l and
 *     b at l + 1 (summed over all workloads); null for a load-only trace
 * @param coactivations {@code [layer]}: pairs a &lt; b chosen together by one token in that layer
 *     (summed over workloads); null for a load-only trace
 */
public record PlacementProblem(
    int layers,
    int experts,
    int gpus,
    int nodes,
    int slots,
    double[][][] loads,
    PairCounts[] transitions,
    PairCounts[] coactivations) {

  public PlacementProblem {
    Objects.requireNonNull(loads, "loads");
    if (layers <= 0 || experts <= 0) {
      throw new IllegalArgumentException("need layers > 0 and experts > 0, got " + layers + ", " + experts);
    }
    if (gpus <= 0 || nodes <= 0 || gpus % nodes != 0) {
      throw new IllegalArgumentException("gpus (" + gpus + ") must be a positive multiple of nodes (" + nodes + ")");
    }
    if (slots % gpus != 0) {
      throw new IllegalArgumentException("slots (" + slots + ") must be a multiple of gpus (" + gpus + ")");
    }
    if (slots < experts) {
      throw new IllegalArgumentException("slots (" + slots + ") must be at least experts (" + experts + ")");
    }
    if (loads.length == 0) throw new IllegalArgumentException("need at least one workload of loads");
    for (double[][] w : loads) {
      if (w.length != layers) throw new IllegalArgumentException("loads has " + w.length + " layers, expected " + layers);
      for (double[] l : w) {
        if (l.length != experts) throw new IllegalArgumentException("loads has " + l.length + " experts, expected " + experts);
      }
    }
    if (transitions != null && transitions.length != Math.max(0, layers - 1)) {
      throw new IllegalArgumentException("transitions has " + transitions.length + " layer pairs, expected " + (layers - 1));
    }
    if (coactivations != null && coactivations.length != layers) {
      throw new IllegalArgumentException("coactivations has " + coactivations.length + " layers, expected " + layers);
    }
  }

  public int slotsPerGpu() {
    return slots / gpus;
  }

  public int gpusPerNode() {
    return gpus / nodes;
  }

  public boolean hasAffinity() {
    return transitions != null;
  }
}
