package io.moeyard.engine.transport;

/**
 * The rule for a world whose ranks run on more than one machine ({@link Transport#machineOf}): a
 * rank can store only into memory of its own machine, so every node must lie within one machine,
 * and only a path that stores within its node and crosses nodes with messages
 * ({@link Transport#sendRecv}) can run: the fused node-level path. Every rank knows every rank's
 * machine, so every rank reaches the same verdict before any collective, and a refused path fails
 * alike everywhere.
 */
public final class Machines {
  private Machines() {}

  /** True when {@code t}'s ranks run on more than one machine. */
  public static boolean spanned(Transport t) {
    for (int q = 1; q < t.size(); q++) if (t.machineOf(q) != t.machineOf(0)) return true;
    return false;
  }

  /**
   * Why {@code path} cannot run on {@code t}'s machines, or null: a node split between machines,
   * or, when {@code storesAcrossNodes} (the path stores into ranks of other nodes), any second
   * machine at all.
   */
  public static String problem(Transport t, String path, boolean storesAcrossNodes) {
    if (!spanned(t)) return null;
    int local = t.topology().localRanks();
    for (int q = 0; q < t.size(); q++) {
      int first = q / local * local;
      if (t.machineOf(q) != t.machineOf(first)) {
        return "node " + q / local + " spans machines: rank " + first + " runs on machine " + t.machineOf(first) + ", rank " + q
            + " on machine " + t.machineOf(q) + " (a node's ranks store into each other's memory, which only ranks of one"
            + " machine share: LOCAL_WORLD_SIZE must not exceed the ranks of one machine)";
      }
    }
    if (!storesAcrossNodes) return null;
    int other = 1;
    while (t.machineOf(other) == t.machineOf(0)) other++;
    return path + " stores into the memory of ranks on other nodes, but ranks 0 and " + other + " run on different machines"
        + " (0 and " + t.machineOf(other) + "); between machines only the fused node-level path runs (variant FUSED,"
        + " node path RELAY), which crosses nodes with messages";
  }

  /** {@link #problem} as an {@link IllegalArgumentException}, for constructors that every rank runs alike. */
  public static void require(Transport t, String path, boolean storesAcrossNodes) {
    String p = problem(t, path, storesAcrossNodes);
    if (p != null) throw new IllegalArgumentException("rank " + t.rank() + ": " + p);
  }
}
