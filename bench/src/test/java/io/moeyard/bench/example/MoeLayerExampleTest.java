package io.moeyard.bench.example;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class MoeLayerExampleTest {
  @Test
  void expertParallelLayerMatchesTheDenseLayerWithinBf16Rounding() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int ranks = 1 + rnd.nextInt(4);
    int experts = ranks * (1 + rnd.nextInt(4));
    int topk = 1 + rnd.nextInt(Math.min(4, experts));
    int hidden = 32;
    MoeLayerExample layer = new MoeLayerExample(ranks, experts, topk, hidden, seed.value());
    float[][][] x = new float[ranks][][];
    for (int r = 0; r < ranks; r++) {
      x[r] = new float[rnd.nextInt(12)][hidden];
      for (float[] row : x[r]) for (int c = 0; c < hidden; c++) row[c] = (float) rnd.nextGaussian();
    }
    List<float[][]> got = layer.runExpertParallel(x);
    for (int r = 0; r < ranks; r++) {
      float[][] want = layer.denseReference(x[r]);
      for (int t = 0; t < want.length; t++) {
        for (int c = 0; c < hidden; c++) {
          float tol = MoeLayerExample.tolerance(want[t][c]);
          assertTrue(Math.abs(want[t][c] - got.get(r)[t][c]) <= tol,
              seed + " rank " + r + " token " + t + " channel " + c + ": " + want[t][c] + " vs " + got.get(r)[t][c]);
        }
      }
    }
  }
}
