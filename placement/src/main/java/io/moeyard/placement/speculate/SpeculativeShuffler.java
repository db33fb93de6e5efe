package io.moeyard.placement.speculate;

import io.moeyard.engine.Topology;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.function.IntConsumer;

/**
 * Before layer l's dispatch, sends each token to the rank that most likely holds its layer-l
 * experts, judged from its routing at layers l-1 and l-2 only, with every rank kept within a
 * tolerance of the mean token count. This is the entry point for a data path: it takes the routing
 * it has already seen as int arrays and answers with target ranks and the permutation.
 *
 * <p>What a rank is worth to a token depends on the {@link Objective}. {@link Objective#RANKS}: the
 * predicted share of its layer-l activations that rank would serve locally, the sum of the
 * predicted probabilities of the experts with a replica there (each expert once, however many
 * replicas). {@link Objective#NODES} adds, with the ranks spread over several nodes, the rows the
 * token is expected to send across nodes from there (see {@link Objective#NODES}). Ranks are then
 * chosen by {@link CapacityAssignment}.
 */
public final class SpeculativeShuffler {
  /** How far a rank's token count may stray from the mean. */
  public static final double TOLERANCE = 0.10;

  /**
   * What one row crossing nodes is worth in rows between ranks (one predicted activation made
   * local saves one), in {@link Objective#NODES}. Of 2, 4, 8 and 16, the smallest that kept the
   * rows crossing nodes below home's on all four ESFT tasks, 8 ranks in 2 and 4 nodes and 16 in 2
   * (8 left one task at home's, give or take a few rows); larger weights save few more node rows
   * and give up more of the rank-level gain (bench/results/speculate-nodes-2026-12-06.md).
   */
  public static final double NODE_ROW_WEIGHT = 16;

  /** What the assignment minimises. */
  public enum Objective {
    /**
     * Rows between ranks: each token's predicted activations served on its own rank (today's
     * objective, blind to nodes).
     */
    RANKS,
    /**
     * Rows crossing nodes, each weighing {@link #NODE_ROW_WEIGHT} rows between ranks, plus rows
     * between ranks as {@link #RANKS} counts them. On the node-level (relay) path a token on rank
     * r of node n sends one dispatch row to every other node that serves one of its experts and
     * gets as many combine partials back, its forward from its current rank c crosses nodes when
     * c is on another node, and so does its way on after the layer when that is already known
     * and on another node (home, after the last layer). With the predictor's probabilities p(e)
     * and k = the token's expert count at l-1 (its expected count at l), the chance that some expert
     * lands on node m is taken as {@code 1 - (1 - q(n, m))^k}, q(n, m) the probability mass of
     * the experts a token on node n is served by on m: the k choices treated as independent draws
     * (the predictor gives one distribution, not a joint one; without replacement the chance is
     * a little higher). An expert with a replica on node n is served there (the replica rule);
     * one without is served by each of its replicas in turn, so its mass is split over their
     * nodes by slot count. Score of (t, r): {@code k * local(t, r) - NODE_ROW_WEIGHT * (2 *
     * sum over m != n of (1 - (1 - q(n, m))^k) + [node(c) != n] + [node(after) != n])}. With one
     * node it is exactly {@link #RANKS}.
     */
    NODES;

    /** {@link #NODES} when the ranks span several nodes (it keeps rows between nodes from growing), else {@link #RANKS}. */
    public static Objective defaultFor(int nodes) {
      return nodes > 1 ? NODES : RANKS;
    }

    /** "ranks" or "nodes", as the command line names them; anything else is one error naming the value. */
    public static Objective parse(String name) {
      for (Objective o : values()) if (o.name().equalsIgnoreCase(name)) return o;
      throw new IllegalArgumentException("speculation objective " + name + " is neither ranks nor nodes");
    }
  }

  private final ExpertPredictor predictor;
  private final int gpus;
  private final Topology topology;
  private final Objective objective;
  private final int[][] expertRanks;
  /** Per layer and source node: (expert, node serving it, share of its slots there) triples, see {@link Objective#NODES}. */
  private final int[][][] remoteExpert;
  private final int[][][] remoteNode;
  private final double[][][] remoteShare;
  private final double nodeRowWeight;
  private final double tolerance;

  /** One node, {@link Objective#RANKS}. @param phy2log {@code [layers][slots]} in force, slots rank-major over {@code gpus} ranks */
  public SpeculativeShuffler(AffinityModel model, int[][] phy2log, int gpus, double tolerance) {
    this(model, phy2log, gpus, 1, Objective.RANKS, tolerance);
  }

  /**
   * @param phy2log {@code [layers][slots]} in force, slots rank-major over {@code gpus} ranks
   * @param nodes nodes the ranks are spread over, {@code gpus / nodes} consecutive ranks each
   */
  public SpeculativeShuffler(AffinityModel model, int[][] phy2log, int gpus, int nodes, Objective objective, double tolerance) {
    this(new ExpertPredictor(model), phy2log, gpus, nodes, objective, NODE_ROW_WEIGHT, tolerance);
  }

  /** One node, {@link Objective#RANKS}. */
  public SpeculativeShuffler(AffinityModel model, Placement placement) {
    this(model, placement.phy2log(), placement.gpus(), TOLERANCE);
  }

  public SpeculativeShuffler(AffinityModel model, Placement placement, int nodes, Objective objective) {
    this(model, placement.phy2log(), placement.gpus(), nodes, objective, TOLERANCE);
  }

  /** @param nodeRowWeight {@link #NODE_ROW_WEIGHT} but for measuring others */
  SpeculativeShuffler(ExpertPredictor predictor, int[][] phy2log, int gpus, int nodes, Objective objective, double nodeRowWeight,
      double tolerance) {
    if (phy2log.length != predictor.layers()) {
      throw new IllegalArgumentException("placement has " + phy2log.length + " layers, the affinity model " + predictor.layers());
    }
    if (!(tolerance >= 0)) throw new IllegalArgumentException("tolerance must be >= 0, got " + tolerance);
    if (gpus <= 0) throw new IllegalArgumentException("gpus must be positive, got " + gpus);
    if (nodes <= 0 || gpus % nodes != 0) throw new IllegalArgumentException("nodes " + nodes + " do not divide the " + gpus + " ranks");
    if (objective == null) throw new IllegalArgumentException("no speculation objective given");
    this.predictor = predictor;
    this.gpus = gpus;
    this.topology = new Topology(nodes, gpus / nodes);
    this.objective = objective;
    this.nodeRowWeight = nodeRowWeight;
    this.tolerance = tolerance;
    new Placement(predictor.experts(), gpus, phy2log); // checks slots, ids and coverage
    expertRanks = new int[phy2log.length][];
    int E = predictor.experts();
    for (int l = 0; l < phy2log.length; l++) {
      int per = phy2log[l].length / gpus;
      boolean[] on = new boolean[E * gpus];
      int n = 0;
      for (int p = 0; p < phy2log[l].length; p++) {
        int idx = phy2log[l][p] * gpus + p / per;
        if (!on[idx]) n++;
        on[idx] = true;
      }
      // flat (expert, rank) pairs, expert-major: the ranks that can serve each expert locally
      int[] pairs = new int[2 * n];
      int k = 0;
      for (int e = 0; e < E; e++) {
        for (int r = 0; r < gpus; r++) {
          if (on[e * gpus + r]) {
            pairs[k++] = e;
            pairs[k++] = r;
          }
        }
      }
      expertRanks[l] = pairs;
    }
    int N = nodes;
    remoteExpert = new int[phy2log.length][N][];
    remoteNode = new int[phy2log.length][N][];
    remoteShare = new double[phy2log.length][N][];
    for (int l = 0; l < phy2log.length; l++) {
      int per = phy2log[l].length / gpus;
      int[][] slotsOn = new int[E][N];
      int[] slots = new int[E];
      for (int p = 0; p < phy2log[l].length; p++) {
        slotsOn[phy2log[l][p]][topology.nodeOf(p / per)]++;
        slots[phy2log[l][p]]++;
      }
      for (int n = 0; n < N; n++) {
        int k = 0;
        for (int e = 0; e < E; e++) if (slotsOn[e][n] == 0) for (int m = 0; m < N; m++) if (slotsOn[e][m] > 0) k++;
        int[] ex = new int[k], nd = new int[k];
        double[] sh = new double[k];
        k = 0;
        for (int e = 0; e < E; e++) {
          if (slotsOn[e][n] > 0) continue;
          for (int m = 0; m < N; m++) {
            if (slotsOn[e][m] == 0) continue;
            ex[k] = e;
            nd[k] = m;
            sh[k++] = (double) slotsOn[e][m] / slots[e];
          }
        }
        remoteExpert[l][n] = ex;
        remoteNode[l][n] = nd;
        remoteShare[l][n] = sh;
      }
    }
  }

  public int gpus() {
    return gpus;
  }

  public int nodes() {
    return topology.nodes();
  }

  public Objective objective() {
    return objective;
  }

  /**
   * Target ranks for layer {@code layer} (at least 1).
   *
   * @param prev1 routing at {@code layer - 1}, {@code [tokens * topk]}, -1 = none
   * @param prev2 routing at {@code layer - 2}, same shape, or null at layer 1
   * @param current each token's rank at {@code layer - 1}: where it stays when scores tie, and
   *     where its forward starts ({@link Objective#NODES}); or null: no preference, no forward cost
   */
  public Shuffle next(int layer, int tokens, int topk, int[] prev1, int[] prev2, int[] current) {
    return next(layer, tokens, topk, prev1, prev2, current, null);
  }

  /**
   * {@link #next(int, int, int, int[], int[], int[])} for a layer after which each token's rank
   * is already known: home after the last layer, where the engine restores token order.
   *
   * @param after each token's rank after this layer's combine ({@link Objective#NODES} counts the
   *     row when it is on another node), or null when not known
   */
  public Shuffle next(int layer, int tokens, int topk, int[] prev1, int[] prev2, int[] current, int[] after) {
    if (layer < 1 || layer >= predictor.layers()) {
      throw new IllegalArgumentException("layer " + layer + " is outside [1, " + predictor.layers() + ")");
    }
    if (prev1.length != tokens * topk || (prev2 != null && prev2.length != tokens * topk)) {
      throw new IllegalArgumentException("routing arrays must hold tokens * topk = " + tokens * topk + " ids");
    }
    if (layer >= 2 && prev2 == null) throw new IllegalArgumentException("layer " + layer + " needs the routing of layer " + (layer - 2));
    for (int[] ranks : new int[][] {current, after}) {
      if (ranks == null) continue;
      if (ranks.length != tokens) throw new IllegalArgumentException("rank arrays must hold one rank per token, " + tokens + ", got " + ranks.length);
      for (int r : ranks) if (r < 0 || r >= gpus) throw new IllegalArgumentException("rank " + r + " is outside [0, " + gpus + ")");
    }
    int E = predictor.experts(), G = gpus;
    for (int[] ids : prev2 == null ? new int[][] {prev1} : new int[][] {prev1, prev2}) {
      for (int e : ids) if (e < -1 || e >= E) throw new IllegalArgumentException("expert id " + e + " is outside [0, " + E + ")");
    }
    double[] score = new double[tokens * G];
    double[] p = new double[E];
    int[] s1 = new int[topk], s2 = new int[topk];
    int[] pairs = expertRanks[layer];
    int[] predicted = new int[tokens];
    // with one node there is no node row to save: the objectives are the same, to the bit
    boolean nodeRows = objective == Objective.NODES && topology.nodes() > 1;
    int N = topology.nodes();
    double[] nodeCost = new double[N];
    double[] mass = new double[N];
    for (int t = 0; t < tokens; t++) {
      int n1 = AffinityModel.distinct(prev1, t * topk, topk, s1);
      int n2 = prev2 == null ? 0 : AffinityModel.distinct(prev2, t * topk, topk, s2);
      predictor.scores(layer, s1, n1, s2, n2, p);
      int base = t * G;
      for (int i = 0; i < pairs.length; i += 2) score[base + pairs[i + 1]] += p[pairs[i]];
      int best = current != null ? current[t] : 0;
      for (int r = 0; r < G; r++) if (score[base + r] > score[base + best]) best = r;
      predicted[t] = best;
      if (nodeRows) {
        for (int n = 0; n < N; n++) nodeCost[n] = 2 * expectedRemoteNodes(layer, n, p, n1, mass);
        int from = current != null ? topology.nodeOf(current[t]) : -1;
        int to = after != null ? topology.nodeOf(after[t]) : -1;
        for (int r = 0; r < G; r++) {
          int n = topology.nodeOf(r);
          double rows = nodeCost[n] + (from >= 0 && from != n ? 1 : 0) + (to >= 0 && to != n ? 1 : 0);
          score[base + r] = n1 * score[base + r] - nodeRowWeight * rows;
        }
      }
    }
    int min = CapacityAssignment.minTokens(tokens, G, tolerance), max = CapacityAssignment.maxTokens(tokens, G, tolerance);
    int[] rank = CapacityAssignment.assign(score, tokens, G, min, max, current);
    return Shuffle.of(rank, predicted, G);
  }

  /**
   * The expected number of nodes other than {@code node} that serve one of a token's {@code k}
   * experts, with the expert probabilities {@code p}: {@link Objective#NODES}' approximation.
   */
  private double expectedRemoteNodes(int layer, int node, double[] p, int k, double[] mass) {
    java.util.Arrays.fill(mass, 0);
    int[] ex = remoteExpert[layer][node], nd = remoteNode[layer][node];
    double[] sh = remoteShare[layer][node];
    for (int i = 0; i < ex.length; i++) mass[nd[i]] += p[ex[i]] * sh[i];
    double sum = 0;
    for (int m = 0; m < mass.length; m++) {
      if (m != node) sum += 1 - Math.pow(Math.max(0, 1 - mass[m]), k);
    }
    return sum;
  }

  /** Home rank of token t of T: contiguous blocks, rank t * G / T. */
  public static int home(int t, int tokens, int gpus) {
    return (int) ((long) t * gpus / tokens);
  }

  /**
   * Runs the shuffler over a whole trace layer by layer, as an engine would: layer 0 at home, layer
   * l from layers l-1 and l-2, and home again after the trace's last layer. The trace may have
   * fewer layers than the model (a prefix: its last layer is then the one before going home).
   *
   * @param layerDone called after each layer, for progress; may be null
   */
  public Assignments assign(RoutingTrace trace, IntConsumer layerDone) {
    int T = trace.tokens(), L = trace.layers(), K = trace.topk(), G = gpus;
    if (L > predictor.layers() || trace.experts() > predictor.experts()) {
      throw new IllegalArgumentException(trace.name() + ": " + L + " layers x " + trace.experts() + " experts, the affinity model has "
          + predictor.layers() + " x " + predictor.experts());
    }
    int[] rank = new int[T * L];
    int[] predicted = new int[T * L];
    int[] current = new int[T];
    int[] home = new int[T];
    for (int t = 0; t < T; t++) {
      home[t] = home(t, T, G);
      current[t] = home[t];
      rank[t * L] = current[t];
      predicted[t * L] = -1;
    }
    if (layerDone != null) layerDone.accept(0);
    int[] ids = trace.ids();
    int[] prev1 = new int[T * K], prev2 = new int[T * K];
    for (int l = 1; l < L; l++) {
      layer(ids, T, L, K, l - 1, prev1);
      if (l >= 2) layer(ids, T, L, K, l - 2, prev2);
      Shuffle s = next(l, T, K, prev1, l >= 2 ? prev2 : null, current, l == L - 1 ? home : null);
      for (int t = 0; t < T; t++) {
        rank[t * L + l] = s.rank()[t];
        predicted[t * L + l] = s.predicted()[t];
      }
      current = s.rank();
      if (layerDone != null) layerDone.accept(l);
    }
    return new Assignments(T, L, G, rank, predicted);
  }

  private static void layer(int[] ids, int T, int L, int K, int l, int[] out) {
    for (int t = 0; t < T; t++) System.arraycopy(ids, (t * L + l) * K, out, t * K, K);
  }
}
