package io.moeyard.placement.cost;

/**
 * One layer's score under a placement.
 *
 * @param layer MoE layer index
 * @param gpuLoads {@code [workload][gpu]} tokens each GPU computes (a replica takes load / replicas)
 * @param balancedness {@code [workload]} mean GPU load / max GPU load (1 when the layer has no load)
 * @param maxGpuLoad highest GPU load over all workloads: what the robust planner minimises
 * @param transitions tokens-pairs going from this layer to the next (0 for the last layer or a
 *     load-only trace)
 * @param crossGpu expected transitions whose two experts sit on different GPUs
 * @param crossNode expected transitions whose two experts sit on different nodes
 */
public record LayerCost(
    int layer,
    double[][] gpuLoads,
    double[] balancedness,
    double maxGpuLoad,
    double transitions,
    double crossGpu,
    double crossNode) {

  /** Mean balancedness over workloads. */
  public double meanBalancedness() {
    double s = 0;
    for (double b : balancedness) s += b;
    return s / balancedness.length;
  }

  /** Lowest balancedness over workloads. */
  public double worstBalancedness() {
    double m = Double.POSITIVE_INFINITY;
    for (double b : balancedness) m = Math.min(m, b);
    return m;
  }
}
