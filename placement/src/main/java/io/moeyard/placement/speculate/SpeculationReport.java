package io.moeyard.placement.speculate;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;

/**
 * What speculation did on one trace, against tokens that stay home.
 *
 * <p>Local activations: the share of (token, layer, k) activations whose expert has a replica on
 * the token's rank at that layer's dispatch (an expert listed twice for one token counts once). {@code localBest} is the same with every token on the
 * rank that holds most of its experts at each layer, ignoring capacities and causality: the
 * ceiling a predictor could reach on this placement.
 *
 * <p>Prediction accuracy: over (token, layer &ge; 1) with at least one expert, the share whose
 * predicted rank (before capacities) holds as many of its experts as any rank does;
 * {@code assignedAccuracy} the same for the rank it was given.
 *
 * <p>Cross-rank rows, one BF16 row of {@code hidden} per (token, rank) pair (dedup'd, as the
 * data path sends them). Dispatch: the ranks serving the token's experts other than its own rank,
 * where an expert with a replica on the token's rank is served there and otherwise by replica
 * {@code t mod count}. Combine: every serving rank and the token's own rank (which holds its
 * residual) sends one partial to the rank the token needs next, unless it is that rank: home
 * without speculation, the next layer's rank with it, and home again after the last layer, where
 * the engine restores token order.
 *
 * <p>Rows crossing nodes, with the ranks in {@code nodes} nodes of consecutive ranks, counted as the
 * node-level (relay) path moves them: one dispatch row per (token, node other than its rank's)
 * serving one of its experts, where an expert with a replica on the token's rank or node is served
 * there and otherwise by replica {@code (rank + t) mod count} (the replica rule, with the token's
 * index in the trace for its row), the same number of combine partials back, and one row for each
 * token forwarded to a rank of another node (speculative only). With one node all are 0.
 */
public record SpeculationReport(
    int tokens,
    int layers,
    int gpus,
    long activations,
    double localHome,
    double localSpeculative,
    double localBest,
    double predictionAccuracy,
    double assignedAccuracy,
    double maxOverMeanTokens,
    double balancednessMean,
    double balancednessWorst,
    long dispatchRowsHome,
    long combineRowsHome,
    long dispatchRowsSpeculative,
    long combineRowsSpeculative,
    long rowBytes,
    int nodes,
    long dispatchNodeRowsHome,
    long dispatchNodeRowsSpeculative,
    long forwardNodeRowsSpeculative) {

  /** Rows crossing nodes without speculation: dispatch rows and as many combine partials. */
  public long nodeRowsHome() {
    return 2 * dispatchNodeRowsHome;
  }

  /** Rows crossing nodes with speculation: dispatch rows, as many combine partials, and forwards. */
  public long nodeRowsSpeculative() {
    return 2 * dispatchNodeRowsSpeculative + forwardNodeRowsSpeculative;
  }

  public long bytesHome() {
    return (dispatchRowsHome + combineRowsHome) * rowBytes;
  }

  public long bytesSpeculative() {
    return (dispatchRowsSpeculative + combineRowsSpeculative) * rowBytes;
  }

  /** One node. @param rowBytes bytes of one token row (hidden x 2 for BF16) */
  public static SpeculationReport measure(RoutingTrace trace, Placement placement, Assignments spec, long rowBytes) {
    return measure(trace, placement, spec, 1, rowBytes);
  }

  /**
   * @param nodes nodes the ranks are spread over, {@code gpus / nodes} consecutive ranks each
   * @param rowBytes bytes of one token row (hidden x 2 for BF16)
   */
  public static SpeculationReport measure(RoutingTrace trace, Placement placement, Assignments spec, int nodes, long rowBytes) {
    int T = trace.tokens(), L = trace.layers(), K = trace.topk(), G = placement.gpus(), E = placement.experts();
    if (nodes <= 0 || G % nodes != 0) throw new IllegalArgumentException("nodes " + nodes + " do not divide the " + G + " ranks");
    int perNode = G / nodes;
    if (spec.tokens() != T || spec.layers() != L || spec.gpus() != G) {
      throw new IllegalArgumentException("assignments [" + spec.tokens() + ", " + spec.layers() + "] on " + spec.gpus()
          + " ranks do not fit the trace [" + T + ", " + L + "] on " + G);
    }
    if (placement.layers() < L) throw new IllegalArgumentException("placement has " + placement.layers() + " layers, trace " + L);
    long acts = 0, home = 0, speculative = 0, best = 0, predicted = 0, assigned = 0, judged = 0;
    long dispHome = 0, combHome = 0, dispSpec = 0, combSpec = 0, nodeHome = 0, nodeSpec = 0, forwardNode = 0;
    int[] nodeMark = new int[nodes];
    int nodeStamp = 0;
    int maxCount = 0;
    double balSum = 0, balWorst = 1;
    int[] cover = new int[G];
    int[] set = new int[K];
    int[] servedHome = new int[G], servedSpec = new int[G];
    int stamp = 0;
    int[] mark = new int[G];
    for (int l = 0; l < L; l++) {
      int[] phy2log = placement.phy2log()[l];
      int per = phy2log.length / G;
      boolean[] on = new boolean[E * G];
      int[][] replicaRanks = new int[E][];
      int[] cnt = new int[E];
      for (int e : phy2log) cnt[e]++;
      for (int e = 0; e < E; e++) replicaRanks[e] = new int[cnt[e]];
      java.util.Arrays.fill(cnt, 0);
      for (int p = 0; p < phy2log.length; p++) {
        int e = phy2log[p];
        on[e * G + p / per] = true;
        replicaRanks[e][cnt[e]++] = p / per;
      }
      double[] loads = new double[E];
      int[] perRank = new int[G];
      for (int t = 0; t < T; t++) {
        int n = AffinityModel.distinct(trace.ids(), (t * L + l) * K, K, set);
        int h = SpeculativeShuffler.home(t, T, G), s = spec.rank(t, l);
        perRank[s]++;
        java.util.Arrays.fill(cover, 0);
        for (int i = 0; i < n; i++) {
          int e = set[i];
          loads[e]++;
          for (int r = 0; r < G; r++) if (on[e * G + r]) cover[r]++;
        }
        int top = 0;
        for (int r = 0; r < G; r++) top = Math.max(top, cover[r]);
        acts += n;
        home += cover[h];
        speculative += cover[s];
        best += top;
        if (l >= 1 && n > 0) {
          judged++;
          if (cover[spec.predicted(t, l)] == top) predicted++;
          if (cover[s] == top) assigned++;
        }
        int nh = served(set, n, h, t, on, replicaRanks, G, servedHome);
        int ns = served(set, n, s, t, on, replicaRanks, G, servedSpec);
        dispHome += nh - (contains(servedHome, nh, h) ? 1 : 0);
        dispSpec += ns - (contains(servedSpec, ns, s) ? 1 : 0);
        combHome += nh - (contains(servedHome, nh, h) ? 1 : 0);
        int dest = l + 1 < L ? spec.rank(t, l + 1) : h;
        // the token's own rank holds its residual and sends it on unless it is the destination
        stamp++;
        int senders = 0;
        for (int i = 0; i < ns; i++) if (mark[servedSpec[i]] != stamp) { mark[servedSpec[i]] = stamp; senders++; }
        if (mark[s] != stamp) { mark[s] = stamp; senders++; }
        combSpec += senders - (mark[dest] == stamp ? 1 : 0);
        if (nodes > 1) {
          nodeHome += remoteNodes(set, n, h, t, on, replicaRanks, G, perNode, nodeMark, ++nodeStamp);
          nodeSpec += remoteNodes(set, n, s, t, on, replicaRanks, G, perNode, nodeMark, ++nodeStamp);
          if (dest / perNode != s / perNode) forwardNode++;
        }
      }
      for (int r = 0; r < G; r++) maxCount = Math.max(maxCount, perRank[r]);
      double b = CostModel.balancedness(CostModel.gpuLoads(loads, phy2log, G));
      balSum += b;
      balWorst = Math.min(balWorst, b);
    }
    return new SpeculationReport(T, L, G, acts, ratio(home, acts), ratio(speculative, acts), ratio(best, acts),
        ratio(predicted, judged), ratio(assigned, judged), maxCount / ((double) T / G), balSum / L, balWorst,
        dispHome, combHome, dispSpec, combSpec, rowBytes, nodes, nodeHome, nodeSpec, forwardNode);
  }

  /** Nodes other than rank {@code at}'s that serve one of the token's experts, by the replica rule. */
  private static int remoteNodes(int[] set, int n, int at, int t, boolean[] on, int[][] replicaRanks, int G, int perNode,
      int[] mark, int stamp) {
    int node = at / perNode, count = 0;
    for (int i = 0; i < n; i++) {
      int e = set[i];
      if (on[e * G + at]) continue;
      boolean inNode = false;
      for (int r : replicaRanks[e]) inNode |= r / perNode == node;
      if (inNode) continue;
      int[] all = replicaRanks[e];
      int m = all[(int) (((long) at + t) % all.length)] / perNode;
      if (mark[m] != stamp) {
        mark[m] = stamp;
        count++;
      }
    }
    return count;
  }

  /** The distinct ranks serving a token on rank {@code at}; returns how many, written to {@code out}. */
  private static int served(int[] set, int n, int at, int t, boolean[] on, int[][] replicaRanks, int G, int[] out) {
    int m = 0;
    for (int i = 0; i < n; i++) {
      int e = set[i];
      int r = on[e * G + at] ? at : replicaRanks[e][t % replicaRanks[e].length];
      if (!contains(out, m, r)) out[m++] = r;
    }
    return m;
  }

  private static boolean contains(int[] a, int n, int v) {
    for (int i = 0; i < n; i++) if (a[i] == v) return true;
    return false;
  }

  private static double ratio(long a, long b) {
    return b == 0 ? 0 : (double) a / b;
  }
}
