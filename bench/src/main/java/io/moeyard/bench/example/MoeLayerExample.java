package io.moeyard.bench.example;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A whole MoE layer under expert parallelism, the way an engine wires moeyard in: each rank
 * routes its own tokens (softmax gate, top-k), dispatches them, runs the experts it holds on the
 * rows it received (slot by slot, rows contiguous), and combines the outputs back into token
 * order. {@link #denseReference} computes the same layer without any parallelism, so the example
 * doubles as an end-to-end check.
 *
 * <p>Expert e is one linear map followed by SiLU: {@code y = silu(x W_e)}, W_e {@code [H][H]}.
 */
public final class MoeLayerExample {
  final int ranks;
  final int experts;
  final int topk;
  final int hidden;
  final float[][] gate; // [H][E]
  final float[][][] expertWeights; // [E][H][H]

  public MoeLayerExample(int ranks, int experts, int topk, int hidden, long seed) {
    this.ranks = ranks;
    this.experts = experts;
    this.topk = topk;
    this.hidden = hidden;
    SplittableRandom rnd = new SplittableRandom(seed);
    gate = new float[hidden][experts];
    for (float[] row : gate) for (int e = 0; e < experts; e++) row[e] = (float) rnd.nextGaussian();
    expertWeights = new float[experts][hidden][hidden];
    double scale = 1 / Math.sqrt(hidden);
    for (float[][] w : expertWeights) for (float[] row : w) for (int j = 0; j < hidden; j++) row[j] = (float) (rnd.nextGaussian() * scale);
  }

  /** The router: softmax over the gate logits, top-k, weights renormalised over the chosen k. */
  Routing route(float[][] x) {
    int tokens = x.length;
    int[] idx = new int[tokens * topk];
    float[] w = new float[tokens * topk];
    for (int t = 0; t < tokens; t++) {
      double[] logit = new double[experts];
      for (int e = 0; e < experts; e++) for (int c = 0; c < hidden; c++) logit[e] += x[t][c] * gate[c][e];
      boolean[] taken = new boolean[experts];
      double sum = 0;
      for (int k = 0; k < topk; k++) {
        int best = -1;
        for (int e = 0; e < experts; e++) if (!taken[e] && (best < 0 || logit[e] > logit[best])) best = e;
        taken[best] = true;
        idx[t * topk + k] = best;
        w[t * topk + k] = (float) Math.exp(logit[best] - logit[idx[t * topk]]);
        sum += w[t * topk + k];
      }
      for (int k = 0; k < topk; k++) w[t * topk + k] /= (float) sum;
    }
    return new Routing(tokens, topk, idx, w);
  }

  float[] expert(int e, float[] in) {
    float[] out = new float[hidden];
    for (int j = 0; j < hidden; j++) {
      float s = 0;
      for (int c = 0; c < hidden; c++) s += in[c] * expertWeights[e][c][j];
      out[j] = s / (1 + (float) Math.exp(-s)); // SiLU
    }
    return out;
  }

  /** Runs the layer on every rank ({@code x[r]} = rank r's tokens), ranks as threads; returns each rank's output rows. */
  public List<float[][]> runExpertParallel(float[][][] x) {
    Topology topo = Topology.singleNode(ranks);
    int maxTokens = 0;
    for (float[][] xr : x) maxTokens = Math.max(maxTokens, xr.length);
    int most = maxTokens;
    try (CpuWorld world = CpuWorld.create(topo)) {
      return world.run(transport -> runRank(transport, x[transport.rank()], most));
    }
  }

  /**
   * This rank's part of the layer on {@code transport}, whatever its ranks are: threads of this
   * JVM ({@link CpuWorld}), processes of one host or of several machines
   * ({@code io.moeyard.engine.shm.ClusterTransport}, one process per rank as engines run). Every
   * rank calls it with its own tokens {@code xr}; {@code maxTokens} bounds every rank's count.
   * Returns this rank's output rows.
   */
  public float[][] runRank(Transport transport, float[][] xr, int maxTokens) {
    if (transport.size() != ranks) throw new IllegalArgumentException("the layer is for " + ranks + " ranks, the world has " + transport.size());
    ExpertMap map = ExpertMap.trivial(transport.topology(), experts);
    // built once per layer and rank, as an engine would: sized for the most tokens a rank sends
    CommConfig config = CommConfig.of(maxTokens, hidden, topk, DType.BF16, DType.BF16);
    int r = transport.rank();
    int tokens = xr.length;
    try (Communicator comm = Communicator.cpu(transport, map, config); Arena arena = Arena.ofShared()) {
      // the experts' output rows, sized up front from what the communicator can deliver
      RowBuffer y = RowBuffer.allocate(arena, comm.receiveCapacity(), hidden, DType.BF16);
      RowBuffer in = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
      for (int t = 0; t < tokens; t++) for (int c = 0; c < hidden; c++) in.setFloat(t, c, xr[t][c]);
      Dispatched d = comm.dispatch(in, route(xr));
      // the experts this rank holds, each on its contiguous block of received rows
      float[] row = new float[hidden];
      for (int slot = 0; slot < d.slots(); slot++) {
        int e = map.expertOfSlot(r * map.slotsPerRank() + slot);
        for (int i = d.slotOffset(slot); i < d.slotOffset(slot + 1); i++) {
          for (int c = 0; c < hidden; c++) row[c] = d.received().getFloat(i, c);
          float[] o = expert(e, row);
          for (int c = 0; c < hidden; c++) y.setFloat(i, c, o[c]);
        }
      }
      RowBuffer out = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
      comm.combine(d, y, out);
      float[][] result = new float[tokens][hidden];
      for (int t = 0; t < tokens; t++) for (int c = 0; c < hidden; c++) result[t][c] = out.getFloat(t, c);
      return result;
    }
  }

  /** The same layer on one rank, in float, no collectives: out[t] = sum_k w_k * expert_k(bf16(x[t])). */
  public float[][] denseReference(float[][] x) {
    Routing routing = route(x);
    float[][] out = new float[x.length][hidden];
    for (int t = 0; t < x.length; t++) {
      float[] in = new float[hidden];
      for (int c = 0; c < hidden; c++) in[c] = io.moeyard.engine.Numerics.bf16ToFloat(io.moeyard.engine.Numerics.floatToBf16(x[t][c]));
      for (int k = 0; k < topk; k++) {
        float[] o = expert(routing.topkIdx()[t * topk + k], in);
        for (int c = 0; c < hidden; c++) out[t][c] += routing.topkWeights()[t * topk + k] * o[c];
      }
    }
    return out;
  }

  /**
   * How far the layer may be from {@link #denseReference} at a value {@code want}: the expert
   * outputs, the partials and the sum are each rounded to bf16.
   */
  public static float tolerance(float want) {
    return 0.02f + 0.02f * Math.abs(want);
  }

  /** {@code java -cp ... io.moeyard.bench.example.MoeLayerExample}: runs the layer and prints the largest error. */
  public static void main(String[] args) {
    MoeLayerExample layer = new MoeLayerExample(4, 16, 2, 64, 42);
    SplittableRandom rnd = new SplittableRandom(7);
    float[][][] x = new float[4][][];
    for (int r = 0; r < 4; r++) {
      x[r] = new float[10 + 5 * r][64];
      for (float[] row : x[r]) for (int c = 0; c < 64; c++) row[c] = (float) rnd.nextGaussian();
    }
    List<float[][]> got = layer.runExpertParallel(x);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
      float[][] want = layer.denseReference(x[r]);
      for (int t = 0; t < want.length; t++) for (int c = 0; c < 64; c++) worst = Math.max(worst, Math.abs(want[t][c] - got.get(r)[t][c]));
    }
    System.out.println("expert-parallel MoE layer vs dense reference: max abs difference " + worst + " (bf16 rounding)");
  }
}
