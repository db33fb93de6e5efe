package io.moeyard.placement.trace;

import io.moeyard.placement.model.PairCounts;
import java.util.HashMap;
import java.util.Map;

/**
 * Accumulates counts over expert pairs of one layer (or layer pair). Dense while E x E is small,
 * a hash map beyond: DeepSeek-V3's 256 x 256 fits comfortably in a dense array, a model with
 * thousands of experts would not.
 */
public final class PairCountsBuilder {
  /** Above this many experts the dense E x E array would pass 8 MiB per layer. */
  static final int DENSE_LIMIT = 1024;

  private final int experts;
  private final long[] dense;
  private final Map<Long, long[]> sparse;

  public PairCountsBuilder(int experts) {
    this.experts = experts;
    if (experts <= DENSE_LIMIT) {
      dense = new long[experts * experts];
      sparse = null;
    } else {
      dense = null;
      sparse = new HashMap<>();
    }
  }

  public void add(int from, int to, long count) {
    if (dense != null) {
      dense[from * experts + to] += count;
    } else {
      sparse.computeIfAbsent((long) from * experts + to, k -> new long[1])[0] += count;
    }
  }

  public void addAll(PairCounts p) {
    for (int i = 0; i < p.size(); i++) add(p.from()[i], p.to()[i], p.count()[i]);
  }

  /** Non-zero pairs, in ascending (from, to) order so that equal inputs give equal outputs. */
  public PairCounts build() {
    if (dense != null) {
      int n = 0;
      for (long c : dense) if (c != 0) n++;
      int[] from = new int[n], to = new int[n];
      long[] count = new long[n];
      int k = 0;
      for (int i = 0; i < dense.length; i++) {
        if (dense[i] != 0) {
          from[k] = i / experts;
          to[k] = i % experts;
          count[k++] = dense[i];
        }
      }
      return new PairCounts(from, to, count);
    }
    long[] keys = sparse.entrySet().stream().filter(e -> e.getValue()[0] != 0).mapToLong(Map.Entry::getKey).sorted().toArray();
    int[] from = new int[keys.length], to = new int[keys.length];
    long[] count = new long[keys.length];
    for (int i = 0; i < keys.length; i++) {
      from[i] = (int) (keys[i] / experts);
      to[i] = (int) (keys[i] % experts);
      count[i] = sparse.get(keys[i])[0];
    }
    return new PairCounts(from, to, count);
  }
}
