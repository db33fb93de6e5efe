package io.moeyard.bench.run;

import io.moeyard.comm.Arrivals;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.placement.speculate.Assignments;
import io.moeyard.placement.speculate.SpeculativeShuffler;
import io.moeyard.placement.trace.RoutingTrace;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/**
 * Several consecutive MoE layers of a measured trace on the CPU backend, every token routed by its
 * real gate output at every layer: tokens either stay home, or move, in each layer's combine
 * ({@link Communicator#combineShuffled}), to the rank a speculative shuffler chose for their next
 * layer. Both runs start from the same rows and must end with the same bits; what differs is where
 * rows travel, which this run counts, and the time the collectives take.
 *
 * <p>The experts are cheap and deterministic (expert e passes its rows through, negated when e is
 * odd), so that a row handed to the wrong expert or token shows in the output, while the time is
 * the collectives'. Each layer's collectives are timed between world barriers (from the first rank's
 * start to the last rank's end), summed over layers; the median over {@code iters} runs is reported.
 * A token's replica choice depends on where it sits ({@link ExpertMap#chooseSlot}), so with replicas
 * the two runs may group a token's partials differently: bit identity holds for placements without
 * replicas.
 */
public final class LayerRun {
  private LayerRun() {}

  /** Where the rows of one run went, summed over layers and ranks, and its median time. */
  public record Mode(
      String name, double medianMs, long dispatchRows, long dispatchRemote, long dispatchRemoteNode,
      long combineRemote, long combineRemoteNode, long forwardRemote, long forwardRemoteNode) {
    /** Rows that crossed ranks: dispatch rows, combine partials, shuffle forwards. */
    public long remote() {
      return dispatchRemote + combineRemote + forwardRemote;
    }

    public long remoteNode() {
      return dispatchRemoteNode + combineRemoteNode + forwardRemoteNode;
    }
  }

  /** Both runs (speculative may be null) and whether their outputs agree bit for bit. */
  public record Result(int ranks, int nodes, int tokensPerRank, int hidden, int fromLayer, int toLayer,
      Mode home, Mode speculative, boolean identical) {}

  /**
   * @param phy2log {@code [layers][slots]} of the placement in force (the trivial map when null)
   * @param shuffler the speculative shuffler, or null for the home run only
   */
  public static Result run(RoutingTrace trace, int from, int to, int ranks, int nodes, int tokensPerRank, int hidden,
      int[][] phy2log, SpeculativeShuffler shuffler, int iters, PrintStream progress) {
    int G = ranks * tokensPerRank;
    int K = trace.topk();
    int L = trace.layers();
    int E = trace.experts();
    int[] ids = Arrays.copyOf(trace.ids(), G * L * K); // the first ranks x tokensPerRank tokens
    RoutingTrace sub = new RoutingTrace(trace.name(), G, L, K, E, ids);
    Topology topo = new Topology(nodes, ranks / nodes);
    ExpertMap[] maps = new ExpertMap[L];
    for (int l = from; l < to; l++) maps[l] = phy2log == null ? ExpertMap.trivial(topo, E) : ExpertMap.of(topo, E, phy2log[l]);
    progress.printf("layers %d..%d of %s: %d ranks x %d tokens, hidden %d bf16, top-%d of %d experts%n",
        from, to - 1, trace.name(), ranks, tokensPerRank, hidden, K, E);
    Assignments home = Assignments.home(G, L, ranks);
    Mode[] modes = new Mode[2];
    short[][][] outs = new short[2][][];
    modes[0] = runMode("home", sub, from, to, maps, home, false, hidden, iters, outs, 0);
    if (shuffler != null) {
      progress.println("speculative shuffler: assigning tokens to ranks layer by layer...");
      Assignments spec = shuffler.assign(sub, null);
      modes[1] = runMode("speculative", sub, from, to, maps, spec, true, hidden, iters, outs, 1);
    }
    boolean same = shuffler == null || Arrays.deepEquals(outs[0], outs[1]);
    return new Result(ranks, nodes, tokensPerRank, hidden, from, to, modes[0], modes[1], same);
  }

  /** Initial row of global token g: a pure function of g, so both runs start alike. */
  private static void initialRow(RowBuffer x, int row, int g, int hidden) {
    java.util.SplittableRandom rnd = new java.util.SplittableRandom(0x9E3779B97F4A7C15L * (g + 1));
    for (int c = 0; c < hidden; c++) x.setFloat(row, c, (float) rnd.nextDouble(-2, 2));
  }

  private static float weight(int g, int l, int k) {
    return (1 + (g * 7 + l * 3 + k) % 5) / 8f;
  }

  private static Mode runMode(String name, RoutingTrace trace, int from, int to, ExpertMap[] maps, Assignments where,
      boolean shuffle, int hidden, int iters, short[][][] outs, int slot) {
    Topology topo = maps[from].topology();
    int ranks = topo.worldSize();
    int G = trace.tokens();
    int K = trace.topk();
    int L = trace.layers();
    int[] ids = trace.ids();
    int cap = 0; // most tokens any rank holds at any layer
    for (int l = from; l < to; l++) {
      int[] n = new int[ranks];
      for (int g = 0; g < G; g++) cap = Math.max(cap, ++n[where.rank(g, l)]);
    }
    int maxTokens = cap;
    long[] samples = new long[iters];
    long[][] counts = new long[ranks][7];
    int[][] residentsOf = new int[ranks][];
    short[][] finalRows = new short[G][];
    try (CpuWorld world = CpuWorld.create(topo)) {
      world.run(t -> {
        int r = t.rank();
        try (Arena arena = Arena.ofShared()) {
          RowBuffer[] x = {RowBuffer.allocate(arena, maxTokens, hidden, DType.BF16), RowBuffer.allocate(arena, maxTokens, hidden, DType.BF16)};
          RowBuffer y = null;
          for (int it = 0; it < iters; it++) {
            long total = 0;
            // tokens sit where the assignment puts them at the first layer, in global order
            int[] res = residents(where, from, r, G);
            for (int i = 0; i < res.length; i++) initialRow(x[0], i, res[i], hidden);
            int cur = 0;
            for (int l = from; l < to; l++) {
              ExpertMap map = maps[l];
              CommConfig cfg = CommConfig.of(maxTokens, hidden, K, DType.BF16, DType.BF16);
              try (Communicator comm = Communicator.cpu(t, map, cfg)) {
                if (y == null || y.rows() < comm.receiveCapacity()) y = RowBuffer.allocate(arena, comm.receiveCapacity(), hidden, DType.BF16);
                int n = res.length;
                int[] idx = new int[n * K];
                float[] w = new float[n * K];
                for (int i = 0; i < n; i++) {
                  for (int k = 0; k < K; k++) {
                    idx[i * K + k] = ids[(res[i] * L + l) * K + k];
                    w[i * K + k] = weight(res[i], l, k);
                  }
                }
                RowBuffer in = new RowBuffer(x[cur].segment(), 0, n, hidden, DType.BF16, null);
                long[] span = new long[2];
                t.barrier();
                span[0] = System.nanoTime();
                Dispatched d = comm.dispatch(in, new Routing(n, K, idx, w));
                span[1] = System.nanoTime();
                total += CpuBench.wallSpan(t.allGather(span));
                experts(d, map, r, y);
                if (it == 0) countDispatch(d, r, topo, counts[r]);
                int[] next = new int[n];
                for (int i = 0; i < n; i++) next[i] = l + 1 < to ? where.rank(res[i], l + 1) : home(res[i], G, ranks);
                RowBuffer out = x[1 - cur];
                residentsOf[r] = res;
                t.barrier();
                span[0] = System.nanoTime();
                // the home run combines as an engine without speculation does: no shuffle step
                Arrivals a = shuffle ? comm.combineShuffled(d, y, next, out) : null;
                if (!shuffle) comm.combine(d, y, new RowBuffer(out.segment(), 0, n, hidden, DType.BF16, null));
                span[1] = System.nanoTime();
                total += CpuBench.wallSpan(t.allGather(span));
                if (it == 0) {
                  for (int i = 0; i < n; i++) {
                    if (next[i] != r) counts[r][5]++;
                    if (topo.nodeOf(next[i]) != topo.nodeOf(r)) counts[r][6]++;
                  }
                }
                int[] arrived = res;
                if (a != null) {
                  arrived = new int[a.rows()];
                  for (int i = 0; i < a.rows(); i++) arrived[i] = residentsOf[a.sourceRank(i)][a.sourceToken(i)];
                }
                t.barrier(); // every rank has read the others' residents before they change
                res = arrived;
                cur = 1 - cur;
              }
            }
            if (r == 0) samples[it] = total;
            if (it == iters - 1) {
              for (int i = 0; i < res.length; i++) {
                finalRows[res[i]] = x[cur].segment().asSlice(x[cur].rowOffset(i), x[cur].rowBytes()).toArray(ValueLayout.JAVA_SHORT);
              }
            }
          }
        }
        return null;
      });
    }
    outs[slot] = finalRows;
    long[] sum = new long[7];
    for (long[] c : counts) for (int i = 0; i < 7; i++) sum[i] += c[i];
    return new Mode(name, CpuBench.median(samples) / 1e6, sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6]);
  }

  private static int home(int g, int tokens, int ranks) {
    return SpeculativeShuffler.home(g, tokens, ranks);
  }

  /** Global ids of the tokens on rank r at layer l, ascending. */
  private static int[] residents(Assignments where, int l, int r, int tokens) {
    int n = 0;
    for (int g = 0; g < tokens; g++) if (where.rank(g, l) == r) n++;
    int[] res = new int[n];
    n = 0;
    for (int g = 0; g < tokens; g++) if (where.rank(g, l) == r) res[n++] = g;
    return res;
  }

  /** Expert e passes its rows through, negated when e is odd (bf16: the sign bit). */
  private static void experts(Dispatched d, ExpertMap map, int r, RowBuffer y) {
    RowBuffer in = d.received();
    long rowBytes = in.rowBytes();
    if (d.receivedRows() > 0) RowCopy.copy(in.segment(), in.rowOffset(0), y.segment(), y.rowOffset(0), d.receivedRows() * rowBytes);
    for (int s = 0; s < d.slots(); s++) {
      if (map.expertOfSlot(r * map.slotsPerRank() + s) % 2 == 0) continue;
      for (int i = d.slotOffset(s); i < d.slotOffset(s + 1); i++) {
        long at = y.rowOffset(i);
        for (int c = 0; c < in.hidden(); c++) {
          long p = at + 2L * c;
          y.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, p, (short) (y.segment().get(ValueLayout.JAVA_SHORT_UNALIGNED, p) ^ 0x8000));
        }
      }
    }
  }

  /**
   * counts[0..4]: rows received, from other ranks, that crossed nodes; partials going back to other
   * ranks, that cross nodes. Node crossings are counted on the path the dispatch took
   * ({@link Dispatched#rowsSentAcrossNodes}: one per (token, remote node) through the node relay,
   * one per token-rank pair single hop; combine's partials come back the same way), summed over
   * ranks as the senders count them; a backend that does not count them gets the receivers' view.
   */
  private static void countDispatch(Dispatched d, int r, Topology topo, long[] counts) {
    Set<Long> remotePairs = new HashSet<>();
    long rowsFromOtherNodes = 0;
    long pairsFromOtherNodes = 0;
    for (int i = 0; i < d.receivedRows(); i++) {
      int src = d.rowSourceRank(i);
      counts[0]++;
      if (src != r) {
        counts[1]++;
        if (remotePairs.add(((long) src << 32) | d.rowSourceToken(i))) {
          counts[3]++;
          if (topo.nodeOf(src) != topo.nodeOf(r)) pairsFromOtherNodes++;
        }
      }
      if (topo.nodeOf(src) != topo.nodeOf(r)) rowsFromOtherNodes++;
    }
    int sent = d.rowsSentAcrossNodes();
    counts[2] += sent >= 0 ? sent : rowsFromOtherNodes;
    counts[4] += sent >= 0 ? sent : pairsFromOtherNodes;
  }
}
