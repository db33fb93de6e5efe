package io.moeyard.placement.speculate;

import java.util.Arrays;
import java.util.PriorityQueue;

/**
 * Assigns tokens to ranks to maximise the summed score (expected local activations) while every
 * rank ends with between {@code min} and {@code max} tokens.
 *
 * <p>This is a transportation problem (tokens to ranks, rank capacities), solved as min-cost flow
 * by successive shortest paths on the rank graph: every token starts on its best rank; while a rank
 * holds more than {@code max} (later: fewer than {@code min}), the cheapest chain of moves
 * r1 -&gt; r2 -&gt; ... -&gt; rk that relieves it is found by Bellman-Ford over the G ranks, where
 * an edge r -&gt; r' costs the smallest score lost by moving one of r's tokens to r' (kept in one
 * heap per ordered rank pair). A chain moves one token per edge, so a token displaced from a full
 * rank may push a third token onwards, which a greedy pass in confidence order cannot do. Each
 * augmentation keeps the assignment optimal for its rank counts (no cycle of moves gains), and with
 * G ranks a search costs O(G^3), so the whole assignment costs O(excess * G^3 + T G log T): cheap
 * next to the dispatch it saves, and exact where greedy is not.
 */
public final class CapacityAssignment {
  private CapacityAssignment() {}

  /** Fewest tokens a rank may hold: 10% below the mean, but never above the mean rounded down. */
  public static int minTokens(int tokens, int ranks, double tolerance) {
    double mean = (double) tokens / ranks;
    return (int) Math.min(Math.ceil(mean * (1 - tolerance) - 1e-9), Math.floor(mean));
  }

  /** Most tokens a rank may hold: 10% above the mean, but never below the mean rounded up. */
  public static int maxTokens(int tokens, int ranks, double tolerance) {
    double mean = (double) tokens / ranks;
    return (int) Math.max(Math.floor(mean * (1 + tolerance) + 1e-9), Math.ceil(mean));
  }

  /**
   * @param score {@code [tokens * ranks]}, token-major: what placing token t on rank r is worth
   * @param preferred where each token goes among ranks of equal score (e.g. where it is now), or null
   * @return the rank of each token
   */
  public static int[] assign(double[] score, int tokens, int ranks, int min, int max, int[] preferred) {
    if ((long) min * ranks > tokens || (long) max * ranks < tokens) {
      throw new IllegalArgumentException(tokens + " tokens do not fit " + ranks + " ranks of " + min + " to " + max);
    }
    int G = ranks;
    int[] rank = new int[tokens];
    int[] count = new int[G];
    for (int t = 0; t < tokens; t++) {
      int best = preferred != null ? preferred[t] : 0;
      for (int r = 0; r < G; r++) if (score[t * G + r] > score[t * G + best]) best = r;
      rank[t] = best;
      count[best]++;
    }
    if (G == 1) return rank;
    @SuppressWarnings("unchecked")
    PriorityQueue<Integer>[] heaps = new PriorityQueue[G * G];
    for (int from = 0; from < G; from++) {
      for (int to = 0; to < G; to++) {
        if (from == to) continue;
        int f = from, d = to;
        heaps[from * G + to] = new PriorityQueue<>((x, y) -> {
          int c = Double.compare(score[x * G + f] - score[x * G + d], score[y * G + f] - score[y * G + d]);
          return c != 0 ? c : Integer.compare(x, y);
        });
      }
    }
    for (int t = 0; t < tokens; t++) enqueue(heaps, t, rank[t], G);
    Moves m = new Moves(score, G, rank, count, heaps);
    while (true) {
      boolean over = false;
      for (int c : count) over |= c > max;
      if (!over) break;
      m.augment(r -> count[r] > max, r -> count[r] < max);
    }
    while (true) {
      boolean under = false;
      for (int c : count) under |= c < min;
      if (!under) break;
      m.augment(r -> count[r] > min, r -> count[r] < min);
    }
    return rank;
  }

  private static void enqueue(PriorityQueue<Integer>[] heaps, int t, int from, int G) {
    for (int to = 0; to < G; to++) if (to != from) heaps[from * G + to].add(t);
  }

  private record Moves(double[] score, int G, int[] rank, int[] count, PriorityQueue<Integer>[] heaps) {
    /** The token whose move from -> to loses least, or -1; drops heap entries of tokens that moved away. */
    int cheapest(int from, int to) {
      PriorityQueue<Integer> h = heaps[from * G + to];
      while (!h.isEmpty() && rank[h.peek()] != from) h.poll();
      return h.isEmpty() ? -1 : h.peek();
    }

    /** Moves one unit along the cheapest chain from a source rank to a sink rank. */
    void augment(java.util.function.IntPredicate source, java.util.function.IntPredicate sink) {
      double[] dist = new double[G];
      int[] prev = new int[G];
      Arrays.fill(dist, Double.POSITIVE_INFINITY);
      Arrays.fill(prev, -1);
      for (int r = 0; r < G; r++) if (source.test(r)) dist[r] = 0;
      double[][] cost = new double[G][G];
      for (int a = 0; a < G; a++) {
        for (int b = 0; b < G; b++) {
          int t = a == b ? -1 : cheapest(a, b);
          cost[a][b] = t < 0 ? Double.POSITIVE_INFINITY : score[t * G + a] - score[t * G + b];
        }
      }
      for (int round = 0; round < G; round++) {
        boolean changed = false;
        for (int a = 0; a < G; a++) {
          if (dist[a] == Double.POSITIVE_INFINITY) continue;
          for (int b = 0; b < G; b++) {
            // 1e-12: rounding must not pass for a gain and send the search round a zero-cost cycle
            if (dist[a] + cost[a][b] < dist[b] - 1e-12) {
              dist[b] = dist[a] + cost[a][b];
              prev[b] = a;
              changed = true;
            }
          }
        }
        if (!changed) break;
      }
      int target = -1;
      for (int r = 0; r < G; r++) {
        if (sink.test(r) && dist[r] < Double.POSITIVE_INFINITY && (target < 0 || dist[r] < dist[target])) target = r;
      }
      if (target < 0) throw new IllegalStateException("no rank can take a token: counts " + Arrays.toString(count));
      // Walk back to a source. Meeting a rank twice means a cycle of moves that gains (rounding can
      // leave one): moving tokens round it keeps every count and raises the score, so do that and
      // let the caller search again.
      int[] seenAt = new int[G];
      Arrays.fill(seenAt, -1);
      int[] chain = new int[G + 1];
      int len = 0;
      for (int b = target; ; b = prev[b]) {
        if (seenAt[b] >= 0) {
          move(chain, seenAt[b], len, b);
          return;
        }
        seenAt[b] = len;
        chain[len++] = b;
        if (prev[b] < 0) break;
      }
      move(chain, 0, len - 1, -1);
    }

    /**
     * Moves one token along each edge chain[i + 1] -&gt; chain[i] for i in [lo, hi), plus, when
     * {@code closing >= 0}, the edge closing -&gt; chain[hi - 1] that makes it a cycle. Every
     * edge's token is picked before any moves: a token moved onto a rank must not move on.
     */
    private void move(int[] chain, int lo, int hi, int closing) {
      int edges = hi - lo;
      int[] from = new int[edges], to = new int[edges], token = new int[edges];
      int k = 0;
      for (int i = lo; i < hi; i++) {
        int dst = chain[i];
        int src = i + 1 < hi || closing < 0 ? chain[i + 1] : closing;
        from[k] = src;
        to[k] = dst;
        token[k] = cheapest(src, dst);
        k++;
      }
      for (int i = 0; i < edges; i++) {
        rank[token[i]] = to[i];
        count[from[i]]--;
        count[to[i]]++;
        for (int d = 0; d < G; d++) if (d != to[i]) heaps[to[i] * G + d].add(token[i]);
      }
    }
  }
}
