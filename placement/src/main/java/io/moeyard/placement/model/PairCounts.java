package io.moeyard.placement.model;

import java.util.Objects;

/**
 * Sparse counts over ordered expert pairs: {@code count[i]} tokens went from expert {@code from[i]}
 * to expert {@code to[i]}. Used for layer-to-layer transitions (from at layer l, to at layer l + 1)
 * and for same-layer co-activation (from &lt; to, both chosen by one token in one layer).
 *
 * <p>Sparse because DeepSeek-V3-sized models have 256 x 256 pairs per layer and most are zero.
 * Entries are unique pairs; order is unspecified.
 */
public record PairCounts(int[] from, int[] to, long[] count) {
  public PairCounts {
    Objects.requireNonNull(from, "from");
    Objects.requireNonNull(to, "to");
    Objects.requireNonNull(count, "count");
    if (from.length != to.length || from.length != count.length) {
      throw new IllegalArgumentException(
          "pair arrays disagree: from=" + from.length + " to=" + to.length + " count=" + count.length);
    }
  }

  public int size() {
    return from.length;
  }

  public long total() {
    long s = 0;
    for (long c : count) s += c;
    return s;
  }
}
