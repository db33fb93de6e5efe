package io.moeyard.placement.speculate;

import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.function.IntConsumer;

/**
 * Before layer l's dispatch, sends each token to the rank that most likely holds its layer-l
 * experts, judged from its routing at layers l-1 and l-2 only, with every rank kept within a
 * tolerance of the mean token count. This is the entry point for a data path: it takes the routing
 * it has already seen as int arrays and answers with target ranks and the permutation.
 *
 * <p>A rank's score for a token is the predicted number of its layer-l activations that rank
 * would serve locally: the sum of the predicted probabilities of the experts with a replica there
 * (each expert once, however many replicas). Ranks are then chosen by {@link CapacityAssignment}.
 */
public final class SpeculativeShuffler {
  /** How far a rank's token count may stray from the mean. */
  public static final double TOLERANCE = 0.10;

  private final ExpertPredictor predictor;
  private final int gpus;
  private final int[][] expertRanks;
  private final double tolerance;

  /** @param phy2log {@code [layers][slots]} in force, slots rank-major over {@code gpus} ranks */
  public SpeculativeShuffler(AffinityModel model, int[][] phy2log, int gpus, double tolerance) {
    this(new ExpertPredictor(model), phy2log, gpus, tolerance);
  }

  public SpeculativeShuffler(AffinityModel model, Placement placement) {
    this(model, placement.phy2log(), placement.gpus(), TOLERANCE);
  }

  SpeculativeShuffler(ExpertPredictor predictor, int[][] phy2log, int gpus, double tolerance) {
    if (phy2log.length != predictor.layers()) {
      throw new IllegalArgumentException("placement has " + phy2log.length + " layers, the affinity model " + predictor.layers());
    }
    if (!(tolerance >= 0)) throw new IllegalArgumentException("tolerance must be >= 0, got " + tolerance);
    this.predictor = predictor;
    this.gpus = gpus;
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
  }

  public int gpus() {
    return gpus;
  }

  /**
   * Target ranks for layer {@code layer} (at least 1).
   *
   * @param prev1 routing at {@code layer - 1}, {@code [tokens * topk]}, -1 = none
   * @param prev2 routing at {@code layer - 2}, same shape, or null at layer 1
   * @param current each token's rank at {@code layer - 1}: where it stays when scores tie; or null
   */
  public Shuffle next(int layer, int tokens, int topk, int[] prev1, int[] prev2, int[] current) {
    if (layer < 1 || layer >= predictor.layers()) {
      throw new IllegalArgumentException("layer " + layer + " is outside [1, " + predictor.layers() + ")");
    }
    if (prev1.length != tokens * topk || (prev2 != null && prev2.length != tokens * topk)) {
      throw new IllegalArgumentException("routing arrays must hold tokens * topk = " + tokens * topk + " ids");
    }
    if (layer >= 2 && prev2 == null) throw new IllegalArgumentException("layer " + layer + " needs the routing of layer " + (layer - 2));
    int E = predictor.experts(), G = gpus;
    for (int[] ids : prev2 == null ? new int[][] {prev1} : new int[][] {prev1, prev2}) {
      for (int e : ids) if (e < -1 || e >= E) throw new IllegalArgumentException("expert id " + e + " is outside [0, " + E + ")");
    }
    double[] score = new double[tokens * G];
    double[] p = new double[E];
    int[] s1 = new int[topk], s2 = new int[topk];
    int[] pairs = expertRanks[layer];
    int[] predicted = new int[tokens];
    for (int t = 0; t < tokens; t++) {
      int n1 = AffinityModel.distinct(prev1, t * topk, topk, s1);
      int n2 = prev2 == null ? 0 : AffinityModel.distinct(prev2, t * topk, topk, s2);
      predictor.scores(layer, s1, n1, s2, n2, p);
      int base = t * G;
      for (int i = 0; i < pairs.length; i += 2) score[base + pairs[i + 1]] += p[pairs[i]];
      int best = current != null ? current[t] : 0;
      for (int r = 0; r < G; r++) if (score[base + r] > score[base + best]) best = r;
      predicted[t] = best;
    }
    int min = CapacityAssignment.minTokens(tokens, G, tolerance), max = CapacityAssignment.maxTokens(tokens, G, tolerance);
    int[] rank = CapacityAssignment.assign(score, tokens, G, min, max, current);
    return Shuffle.of(rank, predicted, G);
  }

  /** Home rank of token t of T: contiguous blocks, rank t * G / T. */
  public static int home(int t, int tokens, int gpus) {
    return (int) ((long) t * gpus / tokens);
  }

  /**
   * Runs the shuffler over a whole trace layer by layer, as an engine would: layer 0 at home, layer
   * l from layers l-1 and l-2. The trace may have fewer layers than the model (a prefix).
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
    for (int t = 0; t < T; t++) {
      current[t] = home(t, T, G);
      rank[t * L] = current[t];
      predicted[t * L] = -1;
    }
    if (layerDone != null) layerDone.accept(0);
    int[] ids = trace.ids();
    int[] prev1 = new int[T * K], prev2 = new int[T * K];
    for (int l = 1; l < L; l++) {
      layer(ids, T, L, K, l - 1, prev1);
      if (l >= 2) layer(ids, T, L, K, l - 2, prev2);
      Shuffle s = next(l, T, K, prev1, l >= 2 ? prev2 : null, current);
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
