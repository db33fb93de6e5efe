package io.moeyard.placement.speculate;

/**
 * Every token's rank at every layer's dispatch, {@code rank[t * layers + l]}, and the rank the
 * predictor preferred before capacities ({@code predicted}, -1 at layer 0, where tokens are home).
 */
public record Assignments(int tokens, int layers, int gpus, int[] rank, int[] predicted) {
  public int rank(int token, int layer) {
    return rank[token * layers + layer];
  }

  public int predicted(int token, int layer) {
    return predicted[token * layers + layer];
  }

  /** Everyone at home: token t of T on rank t * G / T at every layer. */
  public static Assignments home(int tokens, int layers, int gpus) {
    int[] rank = new int[tokens * layers];
    int[] predicted = new int[tokens * layers];
    java.util.Arrays.fill(predicted, -1);
    for (int t = 0; t < tokens; t++) {
      for (int l = 0; l < layers; l++) rank[t * layers + l] = SpeculativeShuffler.home(t, tokens, gpus);
    }
    return new Assignments(tokens, layers, gpus, rank, predicted);
  }
}
