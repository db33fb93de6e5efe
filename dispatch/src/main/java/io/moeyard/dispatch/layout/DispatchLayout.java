package io.moeyard.dispatch.layout;

import io.moeyard.dispatch.Routing;
import io.moeyard.engine.ExpertMap;

/**
 * What one source rank's routing means for the world, computed once per call before any byte
 * moves (DeepEP's {@code get_dispatch_layout}, plus the descriptors dispatch runs from).
 *
 * <p>Each token's selections are resolved to physical slots (replica rule of {@link ExpertMap})
 * and sorted by slot. Slots are rank-major, so the sorted selections of a token fall into runs,
 * one run per destination rank in ascending rank order, each run in ascending local slot order:
 * one run is one <b>token-rank pair</b>, the unit that crosses the wire once (dedup). Pairs are
 * numbered token by token at home ({@link #pairOffset}), and listed per destination in token order
 * ({@link #destPairs}) — the per-peer descriptor the engine walks.
 */
public final class DispatchLayout {
  public final int rank;
  public final int ranks;
  public final int slotsPerRank;
  public final int tokens;
  public final int topk;

  /** {@code [tokens * topk]}: physical slots of each token's selections, ascending, -1 last. */
  public final int[] sortedSlot;
  /** {@code [tokens * topk]}: the k each sorted selection came from (for its weight), -1 last. */
  public final int[] sortedK;
  /** {@code [tokens + 1]}: token t's pairs are {@code [pairOffset[t], pairOffset[t+1])}. */
  public final int[] pairOffset;
  /** {@code [pairs]}: destination rank of each pair. */
  public final int[] pairRank;
  /** {@code [pairs]}: the token of each pair. */
  public final int[] pairToken;
  /** {@code [pairs + 1]}: pair q's selections are sorted indices {@code [pairSel[q], pairSelEnd[q])}. */
  public final int[] pairSel;
  public final int[] pairSelEnd;
  /** {@code [ranks * slotsPerRank]}: tokens this rank sends to each physical slot (N[self][d][e]). */
  public final int[] sendCounts;
  /** {@code [ranks]}: token-rank pairs to each destination (rows that cross, with dedup). */
  public final int[] pairsTo;
  /** {@code [ranks]}: selections landing on each destination (rows written there). */
  public final int[] selectionsTo;
  /** {@code [ranks + 1]} and {@code [pairs]}: the pairs of each destination, in token order. */
  public final int[] destPairStart;
  public final int[] destPairs;

  private int[] permutedPosition;
  private int[] destPosition;
  private int[] permutedSelection;
  private int[] slotPermutedStart;

  private DispatchLayout(int rank, ExpertMap map, Routing routing) {
    this.rank = rank;
    this.ranks = map.ranks();
    this.slotsPerRank = map.slotsPerRank();
    this.tokens = routing.tokens();
    this.topk = routing.topk();
    int n = tokens * topk;
    sortedSlot = new int[n];
    sortedK = new int[n];
    pairOffset = new int[tokens + 1];
    sendCounts = new int[ranks * slotsPerRank];
    pairsTo = new int[ranks];
    selectionsTo = new int[ranks];
    int[] idx = routing.topkIdx();
    int pairs = 0;
    for (int t = 0; t < tokens; t++) {
      int base = t * topk;
      int valid = 0;
      for (int k = 0; k < topk; k++) {
        int e = idx[base + k];
        if (e < 0) continue;
        int slot = map.chooseSlot(rank, t, e);
        // insertion into the sorted prefix: topk is small (<= ~16)
        int i = valid++;
        while (i > 0 && sortedSlot[base + i - 1] > slot) {
          sortedSlot[base + i] = sortedSlot[base + i - 1];
          sortedK[base + i] = sortedK[base + i - 1];
          i--;
        }
        sortedSlot[base + i] = slot;
        sortedK[base + i] = k;
      }
      int prevRank = -1;
      for (int i = 0; i < valid; i++) {
        int slot = sortedSlot[base + i];
        int d = slot / slotsPerRank;
        sendCounts[slot]++;
        selectionsTo[d]++;
        if (d != prevRank) {
          pairsTo[d]++;
          pairs++;
          prevRank = d;
        }
      }
      for (int i = valid; i < topk; i++) {
        sortedSlot[base + i] = -1;
        sortedK[base + i] = -1;
      }
      pairOffset[t + 1] = pairs;
    }
    pairRank = new int[pairs];
    pairToken = new int[pairs];
    pairSel = new int[pairs];
    pairSelEnd = new int[pairs];
    destPairStart = new int[ranks + 1];
    for (int d = 0; d < ranks; d++) destPairStart[d + 1] = destPairStart[d] + pairsTo[d];
    destPairs = new int[pairs];
    int[] fill = new int[ranks];
    int q = 0;
    for (int t = 0; t < tokens; t++) {
      int base = t * topk;
      int prevRank = -1;
      for (int i = 0; i < topk; i++) {
        int slot = sortedSlot[base + i];
        if (slot < 0) break;
        int d = slot / slotsPerRank;
        if (d != prevRank) {
          if (prevRank >= 0) pairSelEnd[q - 1] = base + i;
          pairRank[q] = d;
          pairToken[q] = t;
          pairSel[q] = base + i;
          destPairs[destPairStart[d] + fill[d]++] = q;
          q++;
          prevRank = d;
        }
      }
      if (prevRank >= 0) {
        int end = base;
        while (end < base + topk && sortedSlot[end] >= 0) end++;
        pairSelEnd[q - 1] = end;
      }
    }
  }

  /** Resolves {@code routing} (already validated) of {@code rank} against {@code map}. */
  public static DispatchLayout compute(int rank, ExpertMap map, Routing routing) {
    return new DispatchLayout(rank, map, routing);
  }

  public int pairs() {
    return pairRank.length;
  }

  /** DeepEP's is_token_in_rank[t][d]. */
  public boolean isTokenInRank(int t, int d) {
    for (int q = pairOffset[t]; q < pairOffset[t + 1]; q++) if (pairRank[q] == d) return true;
    return false;
  }

  /**
   * {@code [pairs]}: the inverse of {@link #destPairs}, pair q's index in the destination-major
   * order (where combine's partials for q come home). Computed on first use.
   */
  public int[] destPosition() {
    if (destPosition == null) {
      int[] at = new int[destPairs.length];
      for (int i = 0; i < destPairs.length; i++) at[destPairs[i]] = i;
      destPosition = at;
    }
    return destPosition;
  }

  /**
   * {@code [nodes]}: how many of this rank's tokens have at least one pair on each node (with
   * {@code localRanks} ranks per node): the rows the node relay carries to each node, one per
   * (token, node).
   */
  public int[] tokensToNode(int localRanks) {
    int[] n = new int[(ranks + localRanks - 1) / localRanks];
    for (int t = 0; t < tokens; t++) {
      int prev = -1;
      for (int q = pairOffset[t]; q < pairOffset[t + 1]; q++) {
        int m = pairRank[q] / localRanks;
        if (m != prev) {
          n[m]++;
          prev = m;
        }
      }
    }
    return n;
  }

  /** Total selections (rows of the unfused path's permuted buffer). */
  public int selections() {
    int s = 0;
    for (int v : selectionsTo) s += v;
    return s;
  }

  /**
   * {@code [ranks * slotsPerRank + 1]}: where each physical slot's selections start in the
   * permuted order (slot-major, then token); destination d's selections are the range
   * {@code [slotPermutedStart[d * S], slotPermutedStart[(d + 1) * S])}.
   */
  public int[] slotPermutedStart() {
    if (slotPermutedStart == null) {
      int[] start = new int[sendCounts.length + 1];
      for (int p = 0; p < sendCounts.length; p++) start[p + 1] = start[p] + sendCounts[p];
      slotPermutedStart = start;
    }
    return slotPermutedStart;
  }

  /** {@code [selections]}: the sorted selection index (t * topk + i) at each permuted position. */
  public int[] permutedSelection() {
    if (permutedSelection == null) {
      int[] perm = permutedPosition();
      int[] inv = new int[selections()];
      for (int sel = 0; sel < perm.length; sel++) if (perm[sel] >= 0) inv[perm[sel]] = sel;
      permutedSelection = inv;
    }
    return permutedSelection;
  }

  /**
   * {@code [tokens * topk]}: row of each sorted selection in the unfused path's permuted buffer
   * (ordered by physical slot — hence by destination rank, then local slot — then by token), or
   * -1. Computed on first use (the fused path walks it inverted, the unfused path permutes by it).
   */
  public int[] permutedPosition() {
    if (permutedPosition == null) {
      int[] next = new int[sendCounts.length];
      for (int p = 1; p < next.length; p++) next[p] = next[p - 1] + sendCounts[p - 1];
      int[] pos = new int[sortedSlot.length];
      for (int i = 0; i < pos.length; i++) {
        int slot = sortedSlot[i];
        pos[i] = slot < 0 ? -1 : next[slot]++;
      }
      permutedPosition = pos;
    }
    return permutedPosition;
  }
}
