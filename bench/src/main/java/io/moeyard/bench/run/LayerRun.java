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
import io.moeyard.engine.transport.Transport;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Map;
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
 * start to the last rank's end; across machines on each machine's own clock, the longest machine's:
 * {@link CpuBench#span}), summed over layers; the median over {@code iters} runs is reported.
 * Each mode keeps one communicator per layer for all its runs, so that only its first run pays
 * for the first touch of their peer memory, and both modes run {@code iters} times untimed before
 * either is timed, so that the home run, timed first, does not pay for the JVM's warm-up alone.
 * A token's replica choice depends on where it sits ({@link ExpertMap#chooseSlot}), so with replicas
 * the two runs may group a token's partials differently: bit identity holds for placements without
 * replicas.
 *
 * <p>One rank's body ({@link #rankRun}) runs on any {@link Transport}: rank threads of this JVM
 * ({@link #run}) or rank processes ({@link #runRank}: shared memory on one host, a
 * {@code ClusterTransport} across machines). Ranks share nothing but the transport: what one rank
 * needs of another's (which global token sits in a peer's row) comes through
 * {@link Transport#allGather}, and rank 0 collects the counts and the final rows' digests.
 *
 * <p>The identity check compares digests, not rows: at the end of a run every rank digests the
 * final row of each token it holds ({@link #rowDigest}, 8 bytes per token) and rank 0 compares the
 * two runs token by token. At 8 ranks x 4096 tokens x hidden 7168 that gathers 16 bytes per token
 * (0.5 MB in all) instead of the rows' 470 MB. Every rank derives the speculative assignment itself
 * from the same trace and model (the shuffler is deterministic); the ranks compare digests of
 * what they derived before any row moves, and all fail alike if one differs.
 */
public final class LayerRun {
  private LayerRun() {}

  /**
   * Where the rows of one run went, summed over layers and ranks, its median time, and the digest
   * of its final rows ({@link #outputDigest}: equal digests, equal bits, up to a 2^-64 chance).
   * The time is split into the dispatch spans and the combine spans (a shuffled combine's delivery
   * included), each summed over layers: per run, {@code totalNs[i] == dispatchNs[i] + combineNs[i]},
   * the same spans added up; the medians are taken apart, so theirs need not add up.
   */
  public record Mode(
      String name, double medianMs, double dispatchMedianMs, double combineMedianMs, long[] totalNs, long[] dispatchNs,
      long[] combineNs, long dispatchRows, long dispatchRemote, long dispatchRemoteNode,
      long combineRemote, long combineRemoteNode, long forwardRemote, long forwardRemoteNode, long outputDigest) {
    /** Rows that crossed ranks: dispatch rows, combine partials, shuffle forwards. */
    public long remote() {
      return dispatchRemote + combineRemote + forwardRemote;
    }

    public long remoteNode() {
      return dispatchRemoteNode + combineRemoteNode + forwardRemoteNode;
    }
  }

  /**
   * Both runs (speculative may be null), how the ranks ran ({@code world}: threads, processes,
   * machines), the speculative shuffler's objective (null without one), and where the outputs
   * differ ({@code difference}; null when identical).
   */
  public record Result(int ranks, int nodes, int tokensPerRank, int hidden, int fromLayer, int toLayer, String world,
      SpeculativeShuffler.Objective objective, Mode home, Mode speculative, String difference) {
    /** True when both runs ended with the same bits in every token's row (or only the home run ran). */
    public boolean identical() {
      return difference == null;
    }
  }

  /**
   * What a run is asked to do, as the command line gives it.
   *
   * @param phy2log {@code [layers][slots]} of the placement in force (the trivial map when null)
   * @param shuffler the speculative shuffler, or null for the home run only
   */
  public record Inputs(RoutingTrace trace, int from, int to, int ranks, int nodes, int tokensPerRank, int hidden,
      int[][] phy2log, SpeculativeShuffler shuffler) {}

  /**
   * What every rank runs, derived alike by every rank from the {@link Inputs}: the trace's first
   * ranks x tokensPerRank tokens, each layer's map, and both runs' assignments (speculative null
   * without a shuffler).
   */
  record Prepared(Inputs in, RoutingTrace trace, Topology topology, ExpertMap[] maps, Assignments home, Assignments speculative) {}

  private static final PrintStream QUIET = new PrintStream(OutputStream.nullOutputStream());

  /** Rank threads of this JVM. */
  public static Result run(RoutingTrace trace, int from, int to, int ranks, int nodes, int tokensPerRank, int hidden,
      int[][] phy2log, SpeculativeShuffler shuffler, int iters, PrintStream progress) {
    return run(new Inputs(trace, from, to, ranks, nodes, tokensPerRank, hidden, phy2log, shuffler), iters, progress, -1);
  }

  /**
   * Rank threads of this JVM; {@code corruptRank} (tests; -1: none) flips a bit of one final row
   * of that rank in the speculative run, which the identity check must then report.
   */
  public static Result run(Inputs in, int iters, PrintStream progress, int corruptRank) {
    Prepared p = prepare(in, progress);
    String world = in.ranks() + " rank threads of one JVM";
    try (CpuWorld w = CpuWorld.create(p.topology())) {
      return w.run(t -> rankRun(t, p, iters, corruptRank, world)).get(0);
    }
  }

  /**
   * This process's rank of the run: joins the world the torchrun variables describe (a
   * {@link RankTransport}; across machines when {@code machines}), agreeing on {@code agreed}
   * first, so that ranks given different inputs are named before anything is derived or
   * allocated. Rank 0 returns the result; the others return null.
   */
  public static Result runRank(Inputs in, Map<String, String> agreed, boolean machines, int iters, PrintStream progress,
      int corruptRank) {
    try (RankTransport joined = RankTransport.join(agreed, machines)) {
      Transport t = joined.transport();
      if (t.size() != in.ranks()) {
        throw new IllegalArgumentException("the world has " + t.size() + " ranks, the run was configured for " + in.ranks());
      }
      Prepared p = prepare(in, t.rank() == 0 ? progress : QUIET);
      return rankRun(t, p, iters, corruptRank, ProcBench.world(t));
    }
  }

  static Prepared prepare(Inputs in, PrintStream progress) {
    RoutingTrace trace = in.trace();
    int ranks = in.ranks();
    int G = ranks * in.tokensPerRank();
    int K = trace.topk();
    int L = trace.layers();
    int E = trace.experts();
    int[] ids = Arrays.copyOf(trace.ids(), G * L * K); // the first ranks x tokensPerRank tokens
    RoutingTrace sub = new RoutingTrace(trace.name(), G, L, K, E, ids);
    Topology topo = new Topology(in.nodes(), ranks / in.nodes());
    ExpertMap[] maps = new ExpertMap[L];
    for (int l = in.from(); l < in.to(); l++) {
      maps[l] = in.phy2log() == null ? ExpertMap.trivial(topo, E) : ExpertMap.of(topo, E, in.phy2log()[l]);
    }
    progress.printf("layers %d..%d of %s: %d ranks x %d tokens, hidden %d bf16, top-%d of %d experts%n",
        in.from(), in.to() - 1, trace.name(), ranks, in.tokensPerRank(), in.hidden(), K, E);
    Assignments spec = null;
    if (in.shuffler() != null) {
      progress.println("speculative shuffler: assigning tokens to ranks layer by layer...");
      // the run ends after layer to-1, where tokens go home: the shuffler sees that layer as the last
      int[] head = new int[G * in.to() * K];
      for (int g = 0; g < G; g++) System.arraycopy(ids, g * L * K, head, g * in.to() * K, in.to() * K);
      spec = in.shuffler().assign(new RoutingTrace(trace.name(), G, in.to(), K, E, head), null);
    }
    return new Prepared(in, sub, topo, maps, Assignments.home(G, L, ranks), spec);
  }

  /** One rank's share of both runs, on any transport; rank 0 returns the result, the others null. */
  private static Result rankRun(Transport t, Prepared p, int iters, int corruptRank, String world) {
    requireSameDerivation(t, p);
    // both modes run untimed first, as many times as they are timed: the JVM's compilation is
    // then as warm for the home run, timed first, as for the speculative one, timed after it
    runMode(t, "home", p, p.home(), false, iters, -1);
    if (p.speculative() != null) runMode(t, "speculative", p, p.speculative(), true, iters, -1);
    Ran home = runMode(t, "home", p, p.home(), false, iters, -1);
    Ran spec = p.speculative() == null ? null : runMode(t, "speculative", p, p.speculative(), true, iters, corruptRank);
    if (t.rank() != 0) return null;
    String difference = home.problem();
    if (difference == null && spec != null) difference = spec.problem() != null ? spec.problem() : difference(home, spec);
    Inputs in = p.in();
    return new Result(in.ranks(), in.nodes(), in.tokensPerRank(), in.hidden(), in.from(), in.to(), world,
        in.shuffler() == null ? null : in.shuffler().objective(), home.mode(),
        spec == null ? null : spec.mode(), difference);
  }

  /**
   * Every rank derived the maps and the assignments itself: they compare digests of them before
   * any row moves, and all fail alike, naming the ranks, if one differs (a
   * {@link io.moeyard.engine.CollectiveException}: a rank process says it in one line).
   */
  static void requireSameDerivation(Transport t, Prepared p) {
    long h = 0x243F6A8885A308D3L;
    for (int l = p.in().from(); l < p.in().to(); l++) {
      for (int e : p.maps()[l].physicalToLogical()) h = mix(h ^ e);
    }
    for (Assignments a : new Assignments[] {p.home(), p.speculative()}) {
      if (a == null) continue;
      for (int g = 0; g < a.tokens(); g++) {
        for (int l = p.in().from(); l < p.in().to(); l++) h = mix(h ^ a.rank(g, l));
      }
    }
    Object[] all = t.allGather(new long[] {h});
    for (int q = 1; q < all.length; q++) {
      if (((long[]) all[q])[0] != ((long[]) all[0])[0]) {
        throw new io.moeyard.engine.CollectiveException("ranks 0 and " + q + " derived different layer maps or token assignments from the"
            + " same inputs (the speculative shuffler must be deterministic)");
      }
    }
  }

  /** Initial row of global token g: a pure function of g, so both runs start alike. */
  private static void initialRow(RowBuffer x, int row, int g, int hidden) {
    java.util.SplittableRandom rnd = new java.util.SplittableRandom(0x9E3779B97F4A7C15L * (g + 1));
    for (int c = 0; c < hidden; c++) x.setFloat(row, c, (float) rnd.nextDouble(-2, 2));
  }

  private static float weight(int g, int l, int k) {
    return (1 + (g * 7 + l * 3 + k) % 5) / 8f;
  }

  /**
   * One run as rank 0 sees it: its mode, every token's final-row digest and the rank holding it
   * (-1: none), and what is wrong with where tokens ended (null: each on exactly one rank, home).
   */
  private record Ran(Mode mode, long[] digests, int[] holder, String problem) {}

  /** How many figures each rank reports per run before its (token, digest) pairs: see {@link #countDispatch}. */
  private static final int COUNTS = 7;

  private static Ran runMode(Transport t, String name, Prepared p, Assignments where, boolean shuffle, int iters,
      int corruptRank) {
    Topology topo = p.topology();
    ExpertMap[] maps = p.maps();
    RoutingTrace trace = p.trace();
    int from = p.in().from();
    int to = p.in().to();
    int hidden = p.in().hidden();
    int r = t.rank();
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
    long[] dispatchSamples = new long[iters];
    long[] combineSamples = new long[iters];
    long[] counts = new long[COUNTS];
    long[] finals = null; // this rank's (token, digest) pairs at the end of the last iteration
    // one communicator per layer for all the runs, as an engine keeps its own: built anew for
    // every run, each call would be a communicator's first, paying for the first touch of its
    // peer memory inside the timed spans (more of it in a shuffled combine, whose home rows are
    // peer memory too)
    Communicator[] comms = new Communicator[to];
    try (Arena arena = Arena.ofShared()) {
      RowBuffer[] x = {RowBuffer.allocate(arena, maxTokens, hidden, DType.BF16), RowBuffer.allocate(arena, maxTokens, hidden, DType.BF16)};
      CommConfig cfg = CommConfig.of(maxTokens, hidden, K, DType.BF16, DType.BF16);
      int receiveRows = 0;
      for (int l = from; l < to; l++) {
        comms[l] = Communicator.cpu(t, maps[l], cfg);
        receiveRows = Math.max(receiveRows, comms[l].receiveCapacity());
      }
      RowBuffer y = RowBuffer.allocate(arena, receiveRows, hidden, DType.BF16);
      for (int it = 0; it < iters; it++) {
        long total = 0;
        long dispatchTotal = 0;
        long combineTotal = 0;
        // tokens sit where the assignment puts them at the first layer, in global order
        int[] res = residents(where, from, r, G);
        for (int i = 0; i < res.length; i++) initialRow(x[0], i, res[i], hidden);
        int cur = 0;
        for (int l = from; l < to; l++) {
          ExpertMap map = maps[l];
          Communicator comm = comms[l];
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
          t.barrier();
          long start = System.nanoTime();
          Dispatched d = comm.dispatch(in, new Routing(n, K, idx, w));
          long span = CpuBench.span(t, start, System.nanoTime());
          total += span;
          dispatchTotal += span;
          experts(d, map, r, y);
          if (it == 0) countDispatch(d, r, topo, counts);
          int[] next = new int[n];
          for (int i = 0; i < n; i++) next[i] = l + 1 < to ? where.rank(res[i], l + 1) : home(res[i], G, ranks);
          RowBuffer out = x[1 - cur];
          // which global token sits in each row of every rank: arrivals name (source rank, row)
          Object[] residentsOf = shuffle ? t.allGather(res) : null;
          t.barrier();
          start = System.nanoTime();
          // the home run combines as an engine without speculation does: no shuffle step
          Arrivals a = shuffle ? comm.combineShuffled(d, y, next, out) : null;
          if (!shuffle) comm.combine(d, y, new RowBuffer(out.segment(), 0, n, hidden, DType.BF16, null));
          span = CpuBench.span(t, start, System.nanoTime());
          total += span;
          combineTotal += span;
          if (it == 0) {
            for (int i = 0; i < n; i++) {
              if (next[i] != r) counts[5]++;
              if (topo.nodeOf(next[i]) != topo.nodeOf(r)) counts[6]++;
            }
          }
          if (a != null) {
            int[] arrived = new int[a.rows()];
            for (int i = 0; i < a.rows(); i++) arrived[i] = ((int[]) residentsOf[a.sourceRank(i)])[a.sourceToken(i)];
            res = arrived;
          }
          cur = 1 - cur;
        }
        samples[it] = total; // the same span on every rank
        dispatchSamples[it] = dispatchTotal;
        combineSamples[it] = combineTotal;
        if (it == iters - 1) {
          if (r == corruptRank && res.length > 0) {
            x[cur].segment().set(ValueLayout.JAVA_BYTE, x[cur].rowOffset(0), (byte) (x[cur].segment().get(ValueLayout.JAVA_BYTE, x[cur].rowOffset(0)) ^ 1));
          }
          finals = new long[2 * res.length];
          for (int i = 0; i < res.length; i++) {
            finals[2 * i] = res[i];
            finals[2 * i + 1] = rowDigest(x[cur].segment(), x[cur].rowOffset(i), x[cur].rowBytes());
          }
        }
      }
    } finally {
      for (Communicator c : comms) if (c != null) c.close();
    }
    long[] report = new long[COUNTS + finals.length];
    System.arraycopy(counts, 0, report, 0, COUNTS);
    System.arraycopy(finals, 0, report, COUNTS, finals.length);
    Object[] all = t.allGather(report);
    if (r != 0) return null;
    long[] sum = new long[COUNTS];
    long[] digests = new long[G];
    int[] holder = new int[G];
    Arrays.fill(holder, -1);
    String problem = null;
    for (int q = 0; q < ranks; q++) {
      long[] rep = (long[]) all[q];
      for (int i = 0; i < COUNTS; i++) sum[i] += rep[i];
      for (int i = COUNTS; i < rep.length; i += 2) {
        int g = (int) rep[i];
        if (holder[g] >= 0 && problem == null) problem = "the " + name + " run ends with token " + g + " on ranks " + holder[g] + " and " + q;
        holder[g] = q;
        digests[g] = rep[i + 1];
      }
    }
    long out = 0x13198A2E03707344L;
    for (int g = 0; g < G; g++) {
      if (problem == null && holder[g] != home(g, G, ranks)) {
        problem = "the " + name + " run ends with token " + g + (holder[g] < 0 ? " on no rank" : " on rank " + holder[g])
            + ", not at home (rank " + home(g, G, ranks) + ")";
      }
      out = mix(out ^ digests[g]);
    }
    Mode mode = new Mode(name, CpuBench.median(samples) / 1e6, CpuBench.median(dispatchSamples) / 1e6,
        CpuBench.median(combineSamples) / 1e6, samples, dispatchSamples, combineSamples, sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6], out);
    return new Ran(mode, digests, holder, problem);
  }

  /** Null when every token's final row has the same digest in both runs, else how many differ and the first. */
  private static String difference(Ran home, Ran spec) {
    int differ = 0;
    int first = -1;
    for (int g = 0; g < home.digests().length; g++) {
      if (home.digests()[g] == spec.digests()[g]) continue;
      if (differ++ == 0) first = g;
    }
    if (differ == 0) return null;
    return differ + " of " + home.digests().length + " tokens' final rows differ between the runs, first token " + first
        + " (on rank " + home.holder()[first] + ")";
  }

  /**
   * A digest of a row's bytes. Each step is a bijection of the running state for a fixed word and
   * of the word for a fixed state, so two rows that differ in a single 8-byte word always get
   * different digests; rows that differ in more words collide only by chance (about 2^-64).
   */
  static long rowDigest(MemorySegment seg, long offset, long bytes) {
    long h = mix(bytes);
    long i = 0;
    for (; i + Long.BYTES <= bytes; i += Long.BYTES) h = mix(h ^ seg.get(ValueLayout.JAVA_LONG_UNALIGNED, offset + i));
    if (i < bytes) {
      long tail = 0;
      for (; i < bytes; i++) tail = tail << 8 | (seg.get(ValueLayout.JAVA_BYTE, offset + i) & 0xFF);
      h = mix(h ^ tail);
    }
    return h;
  }

  /** A bijection of 64 bits that spreads every input bit over the output (xor-shifts and odd multipliers). */
  private static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
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
