package io.moeyard.placement.cost;

import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.function.IntConsumer;

/**
 * Replays a per-token trace through a placement to count dispatch rows, with dedup: a token sends
 * one row to each GPU that serves at least one of its experts, however many experts that GPU
 * serves for it (DeepEP, FUSCO and moeyard's dispatch all do this).
 *
 * <p>Assumptions, because a trace does not record them:
 *
 * <ul>
 *   <li>Where a token lives: tokens are spread evenly in trace order, token i on GPU i mod G (data
 *       parallel attention feeding expert parallel MoE with equal batches).
 *   <li>Which replica serves it: the one on the token's own GPU if there is one, else one on its
 *       own node, else any; among several candidates, the (i / G) mod count-th, so that a GPU's
 *       tokens spread evenly over the candidates. This is the locality-first choice SGLang and
 *       vLLM make for static dispatch; a placement that puts replicas near their tokens gets the
 *       credit it would get in an engine.
 *   <li>The all-to-all time of a layer is the slowest GPU's: per link type the busier of its send
 *       and receive bytes over that link's bandwidth, NVLink and network overlapping.
 * </ul>
 */
public final class DispatchModel {
  private DispatchModel() {}

  public static DispatchCost replay(RoutingTrace trace, Placement placement, Network net, IntConsumer layerDone) {
    if (trace.layers() != placement.layers() || trace.experts() != placement.experts()) {
      throw new IllegalArgumentException(trace.name() + ": trace has " + trace.layers() + " layers x " + trace.experts()
          + " experts, the placement " + placement.layers() + " x " + placement.experts());
    }
    int G = placement.gpus();
    if (G % net.nodes() != 0) throw new IllegalArgumentException("gpus (" + G + ") must be a multiple of nodes (" + net.nodes() + ")");
    int gpn = G / net.nodes();
    int T = trace.tokens(), L = trace.layers(), K = trace.topk(), E = trace.experts();
    int[] ids = trace.ids();
    int[] prevGpu = new int[T * K];
    int[] curGpu = new int[T * K];
    int[] stamp = new int[G];
    DispatchCost.LayerDispatch[] out = new DispatchCost.LayerDispatch[L];
    long intraAll = 0, interAll = 0, trans = 0, xg = 0, xn = 0;
    double secAll = 0;
    long rowBytes = net.rowBytes();
    for (int l = 0; l < L; l++) {
      Replicas rep = new Replicas(placement.phy2log()[l], E, G, gpn);
      long[][] rows = new long[G][G];
      java.util.Arrays.fill(stamp, -1);
      for (int t = 0; t < T; t++) {
        int home = t % G;
        int spread = t / G;
        int base = (t * L + l) * K;
        for (int k = 0; k < K; k++) {
          int e = ids[base + k];
          if (e < 0) {
            curGpu[t * K + k] = -1;
            continue;
          }
          int d = rep.choose(e, home, spread);
          curGpu[t * K + k] = d;
          if (stamp[d] != t) {
            stamp[d] = t;
            rows[home][d]++;
          }
        }
        if (l > 0) {
          for (int i = 0; i < K; i++) {
            int a = prevGpu[t * K + i];
            if (a < 0) continue;
            for (int j = 0; j < K; j++) {
              int b = curGpu[t * K + j];
              if (b < 0) continue;
              trans++;
              if (a != b) xg++;
              if (a / gpn != b / gpn) xn++;
            }
          }
        }
      }
      int[] swap = prevGpu;
      prevGpu = curGpu;
      curGpu = swap;

      long intra = 0, inter = 0;
      long[] sendIntra = new long[G], recvIntra = new long[G], sendInter = new long[G], recvInter = new long[G];
      for (int s = 0; s < G; s++) {
        for (int d = 0; d < G; d++) {
          if (s == d || rows[s][d] == 0) continue;
          long b = rows[s][d] * rowBytes;
          if (s / gpn == d / gpn) {
            intra += b;
            sendIntra[s] += b;
            recvIntra[d] += b;
          } else {
            inter += b;
            sendInter[s] += b;
            recvInter[d] += b;
          }
        }
      }
      double sec = 0;
      for (int g = 0; g < G; g++) {
        double a = Math.max(sendIntra[g], recvIntra[g]) / (net.nvlinkGBps() * 1e9);
        double b = Math.max(sendInter[g], recvInter[g]) / (net.netGBps() * 1e9);
        sec = Math.max(sec, Math.max(a, b));
      }
      out[l] = new DispatchCost.LayerDispatch(rows, intra, inter, sec);
      intraAll += intra;
      interAll += inter;
      secAll += sec;
      if (layerDone != null) layerDone.accept(l);
    }
    return new DispatchCost(out, intraAll, interAll, secAll, trans, xg, xn);
  }

  /** Per layer: for each expert, its replica GPUs overall, per (node), and per GPU. */
  private static final class Replicas {
    private final int gpus;
    private final int gpn;
    private final int[][] all;
    private final int[][][] byNode;
    private final boolean[] onGpu;

    Replicas(int[] phy2log, int experts, int gpus, int gpn) {
      this.gpus = gpus;
      this.gpn = gpn;
      int perGpu = phy2log.length / gpus;
      int nodes = gpus / gpn;
      int[] cnt = new int[experts];
      int[][] nodeCnt = new int[experts][nodes];
      for (int p = 0; p < phy2log.length; p++) {
        cnt[phy2log[p]]++;
        nodeCnt[phy2log[p]][p / perGpu / gpn]++;
      }
      all = new int[experts][];
      byNode = new int[experts][nodes][];
      for (int e = 0; e < experts; e++) {
        all[e] = new int[cnt[e]];
        for (int n = 0; n < nodes; n++) byNode[e][n] = new int[nodeCnt[e][n]];
      }
      int[] fill = new int[experts];
      int[][] nodeFill = new int[experts][nodes];
      onGpu = new boolean[experts * gpus];
      for (int p = 0; p < phy2log.length; p++) {
        int e = phy2log[p], g = p / perGpu, n = g / gpn;
        all[e][fill[e]++] = g;
        byNode[e][n][nodeFill[e][n]++] = g;
        onGpu[e * gpus + g] = true;
      }
    }

    int choose(int e, int home, int spread) {
      if (onGpu[e * gpus + home]) return home;
      int[] local = byNode[e][home / gpn];
      if (local.length > 0) return local[spread % local.length];
      return all[e][spread % all[e].length];
    }
  }
}
