package io.moeyard.engine;

import java.util.Arrays;

/**
 * One MoE layer's map between logical experts and physical slots. Slots are rank-major: slot
 * {@code p} lives on rank {@code p / slotsPerRank()} as its local slot {@code p % slotsPerRank()}.
 * A logical expert may have several slots (replicas, EPLB-style); every expert has at least one.
 *
 * <h2>Which replica a token uses</h2>
 * For token {@code t} of source rank {@code r} choosing expert {@code e} ({@link #chooseSlot}):
 * the candidates are e's slots on rank r itself; if none, e's slots on r's node; if none, all of
 * e's slots. The token takes {@code candidates[(r + t) % candidates.length]} (candidates in
 * ascending slot order). Local first because a local replica costs no transfer at all, node next
 * because NVLink is an order of magnitude faster than the network; the {@code (r + t)} rotation
 * spreads a rank's tokens evenly over equally good replicas and starts each rank on a different
 * one. The rule is a pure function of (r, t, e), so every backend and every rank agrees on it.
 */
public final class ExpertMap {
  private final int experts;
  private final int ranks;
  private final Topology topology;
  private final int[] slotToExpert;
  private final int[][] expertSlots;

  private ExpertMap(Topology topology, int experts, int[] slotToExpert) {
    this.topology = topology;
    this.ranks = topology.worldSize();
    this.experts = experts;
    this.slotToExpert = slotToExpert;
    if (experts <= 0) throw new IllegalArgumentException("experts must be > 0, got " + experts);
    if (slotToExpert.length == 0 || slotToExpert.length % ranks != 0) {
      throw new IllegalArgumentException(
          "physical slots (" + slotToExpert.length + ") must be a positive multiple of the world size (" + ranks + ")");
    }
    int[] count = new int[experts];
    for (int p = 0; p < slotToExpert.length; p++) {
      int e = slotToExpert[p];
      if (e < 0 || e >= experts) {
        throw new IllegalArgumentException("slot " + p + " maps to expert " + e + ", outside [0, " + experts + ")");
      }
      count[e]++;
    }
    expertSlots = new int[experts][];
    for (int e = 0; e < experts; e++) {
      if (count[e] == 0) throw new IllegalArgumentException("expert " + e + " has no physical slot");
      expertSlots[e] = new int[count[e]];
      count[e] = 0;
    }
    for (int p = 0; p < slotToExpert.length; p++) {
      int e = slotToExpert[p];
      expertSlots[e][count[e]++] = p;
    }
  }

  /** The trivial map: slot p holds expert p; needs experts divisible by the world size. */
  public static ExpertMap trivial(Topology topology, int experts) {
    if (experts % topology.worldSize() != 0) {
      throw new IllegalArgumentException(
          "experts (" + experts + ") must be divisible by the world size (" + topology.worldSize() + ") for the trivial map");
    }
    int[] map = new int[experts];
    for (int p = 0; p < experts; p++) map[p] = p;
    return new ExpertMap(topology, experts, map);
  }

  /** A map with replicas: {@code physicalToLogical[p]} is the expert that slot p holds. */
  public static ExpertMap of(Topology topology, int experts, int[] physicalToLogical) {
    return new ExpertMap(topology, experts, physicalToLogical.clone());
  }

  public int experts() {
    return experts;
  }

  public int slots() {
    return slotToExpert.length;
  }

  public int ranks() {
    return ranks;
  }

  public Topology topology() {
    return topology;
  }

  public int slotsPerRank() {
    return slotToExpert.length / ranks;
  }

  public int rankOfSlot(int slot) {
    return slot / slotsPerRank();
  }

  public int expertOfSlot(int slot) {
    return slotToExpert[slot];
  }

  /** Slots of expert {@code e}, ascending. The returned array must not be modified. */
  public int[] slotsOf(int e) {
    return expertSlots[e];
  }

  public int[] physicalToLogical() {
    return slotToExpert.clone();
  }

  /** The replica rule in the class comment; {@code e} must be a valid expert. */
  public int chooseSlot(int srcRank, int token, int e) {
    int[] all = expertSlots[e];
    if (all.length == 1) return all[0];
    int spr = slotsPerRank();
    int onRank = 0;
    for (int p : all) if (p / spr == srcRank) onRank++;
    if (onRank > 0) return pick(all, onRank, (srcRank + token) % onRank, p -> p / spr == srcRank);
    int node = topology.nodeOf(srcRank);
    int onNode = 0;
    for (int p : all) if (topology.nodeOf(p / spr) == node) onNode++;
    if (onNode > 0) return pick(all, onNode, (srcRank + token) % onNode, p -> topology.nodeOf(p / spr) == node);
    return all[(int) (((long) srcRank + token) % all.length)];
  }

  private static int pick(int[] all, int n, int index, java.util.function.IntPredicate keep) {
    int i = 0;
    for (int p : all) {
      if (keep.test(p)) {
        if (i == index) return p;
        i++;
      }
    }
    throw new AssertionError("candidate " + index + " of " + n + " not found");
  }

  @Override
  public String toString() {
    return "ExpertMap[experts=" + experts + ", slots=" + slots() + ", ranks=" + ranks + ", map=" + Arrays.toString(slotToExpert) + "]";
  }
}
