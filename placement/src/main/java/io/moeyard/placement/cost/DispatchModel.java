package io.moeyard.placement.cost;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.Arrays;
import java.util.function.IntConsumer;

/**
 * Replays a per-token trace through a placement to count dispatch rows, with dedup: a token sends
 * one row to each GPU that serves at least one of its experts, however many experts that GPU
 * serves for it (DeepEP, FUSCO and moeyard's dispatch all do this).
 *
 * <p>Assumptions, because a trace does not record them:
 *
 * <ul>
 *   <li>Where a token lives: {@link TokenSplit}, contiguous blocks of the trace per GPU, as the
 *       bench feeds the data path.
 *   <li>Which replica serves it: the data path's own rule, {@link ExpertMap#chooseSlot} on the
 *       layer's {@link Placement#expertMap expert map} (the token's GPU, else its node, else any,
 *       rotated over the candidates by GPU and token). Locality first is also what SGLang and
 *       vLLM do for static dispatch, so a placement that puts replicas near their tokens gets the
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
    Topology topology = new Topology(net.nodes(), G / net.nodes());
    int gpn = topology.localRanks();
    TokenSplit split = new TokenSplit(trace.tokens(), G);
    int T = trace.tokens(), L = trace.layers(), K = trace.topk();
    int[] ids = trace.ids();
    int[] prevGpu = new int[T * K];
    int[] curGpu = new int[T * K];
    int[] stamp = new int[G];
    DispatchCost.LayerDispatch[] out = new DispatchCost.LayerDispatch[L];
    long intraAll = 0, interAll = 0, trans = 0, xg = 0, xn = 0;
    double secAll = 0;
    long rowBytes = net.rowBytes();
    for (int l = 0; l < L; l++) {
      ExpertMap map = placement.expertMap(l, topology);
      int spr = map.slotsPerRank();
      long[][] rows = new long[G][G];
      Arrays.fill(stamp, -1);
      for (int home = 0; home < G; home++) {
        int first = split.start(home);
        for (int t = 0; t < split.count(home); t++) {
          int i = first + t;
          int base = (i * L + l) * K;
          for (int k = 0; k < K; k++) {
            int e = ids[base + k];
            if (e < 0) {
              curGpu[i * K + k] = -1;
              continue;
            }
            int d = map.chooseSlot(home, t, e) / spr;
            curGpu[i * K + k] = d;
            if (stamp[d] != i) {
              stamp[d] = i;
              rows[home][d]++;
            }
          }
          if (l > 0) {
            for (int a = 0; a < K; a++) {
              int ga = prevGpu[i * K + a];
              if (ga < 0) continue;
              for (int b = 0; b < K; b++) {
                int gb = curGpu[i * K + b];
                if (gb < 0) continue;
                trans++;
                if (ga != gb) xg++;
                if (ga / gpn != gb / gpn) xn++;
              }
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
}
