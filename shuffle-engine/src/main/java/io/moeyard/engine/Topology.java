package io.moeyard.engine;

/**
 * The shape of an expert-parallel world: {@code nodes} x {@code localRanks}; rank = node *
 * localRanks + local. Nodes matter for replica choice (prefer a replica on the own node) and for
 * the hierarchical path (one crossing per node).
 */
public record Topology(int nodes, int localRanks) {
  public Topology {
    if (nodes <= 0 || localRanks <= 0) {
      throw new IllegalArgumentException("topology needs nodes > 0 and localRanks > 0, got " + nodes + " x " + localRanks);
    }
  }

  /** One node holding all ranks, the usual in-JVM and single-GPU-node case. */
  public static Topology singleNode(int ranks) {
    return new Topology(1, ranks);
  }

  public int worldSize() {
    return nodes * localRanks;
  }

  public int nodeOf(int rank) {
    return rank / localRanks;
  }
}
