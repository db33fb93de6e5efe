package io.moeyard.placement.cost;

/**
 * A placement's score over all layers and workloads of a problem.
 *
 * @param layers per-layer detail
 * @param meanBalancedness mean over layers and workloads
 * @param worstBalancedness minimum over layers and workloads
 * @param sumMaxGpuLoad sum over layers of the highest GPU load over workloads (the robust
 *     compute-time proxy: layers run one after another, the slowest GPU sets each one's time)
 * @param transitions all layer-to-layer expert pairs counted in the trace(s)
 * @param crossGpu expected cross-GPU transitions, summed over layer pairs
 * @param crossNode expected cross-node transitions, summed over layer pairs
 */
public record PlacementScore(
    LayerCost[] layers,
    double meanBalancedness,
    double worstBalancedness,
    double sumMaxGpuLoad,
    double transitions,
    double crossGpu,
    double crossNode) {

  /** Share of transitions that cross GPUs (NaN without transitions). */
  public double crossGpuFraction() {
    return transitions == 0 ? Double.NaN : crossGpu / transitions;
  }

  /** Share of transitions that cross nodes (NaN without transitions). */
  public double crossNodeFraction() {
    return transitions == 0 ? Double.NaN : crossNode / transitions;
  }
}
