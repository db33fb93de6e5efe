package io.moeyard.placement.ilp;

/**
 * Knobs of the CP-SAT planner that {@link io.moeyard.placement.model.CpSatOptions} does not carry.
 * {@link #defaults()} are the measured defaults (see package-info).
 *
 * @param balanceSlack eps: each layer's max GPU load may grow to (1 + eps) x the reference max
 *     load (the warm start's for one workload; the best robust max found in phase 1 for several)
 * @param gpuWeight cost of one token transition (layer l to l + 1) that changes GPU
 * @param nodeWeight extra cost of one transition that changes node
 * @param coactGpuWeight cost of one same-layer co-activated pair whose experts are on different GPUs
 * @param coactNodeWeight extra cost of such a pair on different nodes
 * @param coactPairs how many of a layer's heaviest co-activation pairs enter the model (0 = none)
 * @param refineFraction share of the time limit for refinement sweeps that re-solve each layer
 *     with both neighbours fixed (0 = forward pass only)
 * @param robustReplication with several workloads, choose replica counts by the worst normalised
 *     load over the workloads (instead of the warm start's counts)
 * @param uniformReplicaChoice score a transition into a replicated expert as the cost package
 *     does (each replica equally likely: local with probability = shared replica fraction) instead
 *     of "local if SOME replica is local" (a dispatcher that prefers the nearest replica)
 * @param localityReplicas with one workload (or an unseen one) and the nearest-replica rule, move
 *     redundant replicas that the balance cap does not need to the experts where they keep the
 *     most transitions local ({@link LocalityReplicas})
 */
public record CpSatTuning(
    double balanceSlack,
    long gpuWeight,
    long nodeWeight,
    long coactGpuWeight,
    long coactNodeWeight,
    int coactPairs,
    double refineFraction,
    boolean robustReplication,
    boolean uniformReplicaChoice,
    boolean localityReplicas) {

  public CpSatTuning {
    if (!(balanceSlack >= 0) || balanceSlack > 1) throw new IllegalArgumentException("balanceSlack must be in [0, 1], got " + balanceSlack);
    if (gpuWeight < 0 || nodeWeight < 0 || coactGpuWeight < 0 || coactNodeWeight < 0) {
      throw new IllegalArgumentException("weights must be >= 0");
    }
    if (coactPairs < 0) throw new IllegalArgumentException("coactPairs must be >= 0, got " + coactPairs);
    if (!(refineFraction >= 0) || refineFraction >= 1) {
      throw new IllegalArgumentException("refineFraction must be in [0, 1), got " + refineFraction);
    }
  }

  public static CpSatTuning defaults() {
    return new CpSatTuning(0.008, 1, 2, 0, 0, 0, 0.3, true, false, true);
  }

  public CpSatTuning withRobustReplication(boolean r) {
    return new CpSatTuning(balanceSlack, gpuWeight, nodeWeight, coactGpuWeight, coactNodeWeight, coactPairs, refineFraction, r, uniformReplicaChoice, localityReplicas);
  }

  public CpSatTuning withLocalityReplicas(boolean r) {
    return new CpSatTuning(balanceSlack, gpuWeight, nodeWeight, coactGpuWeight, coactNodeWeight, coactPairs, refineFraction, robustReplication, uniformReplicaChoice, r);
  }

  public CpSatTuning withUniformReplicaChoice(boolean u) {
    return new CpSatTuning(balanceSlack, gpuWeight, nodeWeight, coactGpuWeight, coactNodeWeight, coactPairs, refineFraction, robustReplication, u, localityReplicas);
  }
}
