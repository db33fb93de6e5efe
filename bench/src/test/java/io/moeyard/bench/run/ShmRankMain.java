package io.moeyard.bench.run;

import io.moeyard.comm.Arrivals;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * One rank process of {@link ShmTransportProcessTest} (RANK, WORLD_SIZE, ... in the environment).
 * {@code compare SEED CASES}: for each random case (derived from the seed, the same in every
 * process) it runs the whole world in this JVM ({@link CpuRun#run}, ranks as threads) and its own
 * rank over shared memory ({@link CpuRun#runRank}), fused through the node relay, fused single-hop
 * and unfused, and compares every output of its rank bit for bit (and its combine output with the
 * kit's reference), then checks a shuffled combine against the reference. {@code loop}: dispatch
 * and combine until killed (the fault test). {@code watch VICTIM HOW}: after a barrier rank VICTIM
 * aborts the world ({@code abort}) or just waits to be killed ({@code kill}), outside any
 * collective, while the others poll {@link ShmTransport#checkPeers} and print what it threw, then
 * what their next collective threw.
 * Exit 0 when all matched; 1 on a mismatch (printed); 3 when a collective failed (printed).
 */
public final class ShmRankMain {
  private ShmRankMain() {}

  public static void main(String[] args) {
    int code;
    try {
      code = switch (args[0]) {
        case "loop" -> loop();
        case "stall" -> stall(Long.parseLong(args[1]));
        case "watch" -> watch(Integer.parseInt(args[1]), args[2]);
        case "cluster" -> cluster(Long.parseLong(args[1]), Integer.parseInt(args[2]), Integer.parseInt(args[3]));
        default -> compare(Long.parseLong(args[1]), Integer.parseInt(args[2]));
      };
    } catch (CollectiveException e) {
      System.out.println("collective failed: " + e.getClass().getSimpleName() + ": " + e.getMessage());
      code = 3;
    } catch (Throwable e) {
      e.printStackTrace(System.out);
      code = 4;
    }
    System.out.flush();
    System.exit(code);
  }

  private static int compare(long seed, int cases) {
    try (ShmTransport t = ShmTransport.join(Map.of("test", "compare", "seed", Long.toString(seed)))) {
      int r = t.rank();
      int bad = 0;
      for (int i = 0; i < cases; i++) {
        Workload wl = randomCase(seed, i, t.topology());
        // fused through the node relay, fused single-hop, unfused
        for (int mode = 0; mode < 3; mode++) {
          boolean fused = mode < 2;
          boolean relay = mode == 0;
          String name = fused ? relay ? " fused relay" : " fused direct" : " unfused";
          int chunk = 1 + new SplittableRandom(seed + i).nextInt(16);
          try (CpuRun inJvm = CpuRun.run(wl, fused, relay, chunk); CpuRun mine = CpuRun.runRank(t, wl, fused, relay, chunk)) {
            String d = difference(inJvm, mine, r, wl);
            String p = wl.ref.checkDispatch(r, mine.recv[r], mine.rows[r], wl.xs());
            if (p == null) p = wl.ref.checkCombine(r, wl.w[r], wl.ys(), mine.out[r]);
            if (d != null || p != null) {
              System.out.println("MISMATCH seed " + seed + " case " + i + name + " rank " + r + ": "
                  + (d != null ? d : "vs the reference: " + p) + " (" + wl.describe() + ")");
              bad++;
            }
          }
        }
        String shuffled = shuffleDifference(t, wl, seed * 131 + i);
        if (shuffled != null) {
          System.out.println("MISMATCH seed " + seed + " case " + i + " shuffled combine rank " + r + ": " + shuffled
              + " (" + wl.describe() + ")");
          bad++;
        }
        System.out.println("case " + i + " " + (bad == 0 ? "ok" : "bad") + ": rank " + r + " received "
            + wl.ref.rowsReceivedBy(r) + " rows (" + wl.describe() + ")");
      }
      return bad == 0 ? 0 : 1;
    }
  }

  /**
   * A shuffled combine through the communicator over shared memory, into plain memory of this
   * process: every token's combined row must arrive on its random target, by source rank then
   * token, equal to the reference's row. Every process draws every rank's targets from {@code
   * seed}, so each knows what should arrive.
   */
  static String shuffleDifference(io.moeyard.engine.transport.Transport t, Workload wl, long seed) {
    int r = t.rank();
    int ranks = wl.ranks();
    SplittableRandom rnd = new SplittableRandom(seed);
    int[][] next = new int[ranks][];
    int arriving = 0;
    for (int s = 0; s < ranks; s++) {
      next[s] = new int[wl.tokens[s]];
      for (int k = 0; k < next[s].length; k++) {
        next[s][k] = rnd.nextInt(ranks);
        if (next[s][k] == r) arriving++;
      }
    }
    int maxTokens = Math.max(1, Arrays.stream(wl.tokens).max().orElse(0));
    CommConfig cfg = CommConfig.of(maxTokens, wl.hidden, wl.topk, wl.dtype, wl.outType);
    try (Communicator comm = Communicator.cpu(t, wl.map, cfg); Arena arena = Arena.ofConfined()) {
      RowBuffer into = RowBuffer.allocate(arena, Math.max(1, arriving), wl.hidden, wl.outType);
      Dispatched d = comm.dispatch(wl.x(r), wl.routing(r));
      Arrivals a = comm.combineShuffled(d, wl.y(r), next[r], into);
      if (a.rows() != arriving) return a.rows() + " rows arrived, expected " + arriving;
      RowBuffer[] ys = wl.ys();
      RowBuffer[] expected = new RowBuffer[ranks];
      int i = 0;
      for (int s = 0; s < ranks; s++) {
        for (int k = 0; k < next[s].length; k++) {
          if (next[s][k] != r) continue;
          if (a.sourceRank(i) != s || a.sourceToken(i) != k) {
            return "arrival " + i + " is (" + a.sourceRank(i) + ", " + a.sourceToken(i) + "), expected (" + s + ", " + k + ")";
          }
          if (expected[s] == null) expected[s] = wl.ref.combined(s, wl.w[s], ys, wl.outType);
          long n = into.rowBytes();
          long at = MemorySegment.mismatch(into.segment(), into.rowOffset(i), into.rowOffset(i) + n,
              expected[s].segment(), expected[s].rowOffset(k), expected[s].rowOffset(k) + n);
          if (at >= 0) return "arrival " + i + " (rank " + s + " token " + k + ") differs from the reference at byte " + at;
          i++;
        }
      }
      return null;
    }
  }

  /**
   * Case i of the seed on the world's topology: the kit's random workloads, and its edge cases in
   * turn (a rank that receives nothing, no tokens anywhere, a rank without tokens, every token to
   * one expert at top-1), so that a few cases per run still meet each.
   */
  static Workload randomCase(long seed, int i, Topology topo) {
    long s = seed * 31 + i;
    int kind = i % (Workload.EDGE_CASES + 1);
    return kind == 0 ? Workload.random(s, topo, 48) : Workload.edge(s, topo, 48, kind - 1);
  }

  /**
   * {@code cluster SEED CASES NODES_PER_MACHINE}: as {@code compare}, over a {@link ClusterTransport}
   * whose pretend machines hold {@code NODES_PER_MACHINE} nodes each (machine m: "pretend-m"), so
   * that a rank maps only its own machine's peer memory and any store into another machine's
   * would throw: the fused node-level path must give the in-JVM bits, the shuffled combine the
   * reference's rows on random targets (sent between machines, read within one), and the paths
   * that store into other nodes must be refused by every rank ("refused: ..." printed).
   */
  private static int cluster(long seed, int cases, int nodesPerMachine) {
    int local = Integer.parseInt(System.getenv("LOCAL_WORLD_SIZE"));
    int rank = Integer.parseInt(System.getenv("RANK"));
    String machine = "pretend-" + rank / local / nodesPerMachine;
    try (ClusterTransport t = ClusterTransport.join(io.moeyard.engine.rendezvous.RankEnv.fromEnv(),
        Map.of("test", "cluster", "seed", Long.toString(seed)), io.moeyard.engine.rendezvous.ProcessWorld.DEFAULT_TIMEOUT, machine)) {
      int r = t.rank();
      int bad = 0;
      for (int i = 0; i < cases; i++) {
        Workload wl = randomCase(seed, i, t.topology());
        int chunk = 1 + new SplittableRandom(seed + i).nextInt(16);
        try (CpuRun inJvm = CpuRun.run(wl, true, true, chunk); CpuRun mine = CpuRun.runRank(t, wl, true, true, chunk)) {
          String d = difference(inJvm, mine, r, wl);
          String p = wl.ref.checkDispatch(r, mine.recv[r], mine.rows[r], wl.xs());
          if (p == null) p = wl.ref.checkCombine(r, wl.w[r], wl.ys(), mine.out[r]);
          if (d != null || p != null) {
            System.out.println("MISMATCH seed " + seed + " case " + i + " fused relay rank " + r + ": "
                + (d != null ? d : "vs the reference: " + p) + " (" + wl.describe() + ")");
            bad++;
          }
        }
        for (boolean fused : new boolean[] {true, false}) {
          try (CpuRun refused = CpuRun.runRank(t, wl, fused, false, chunk)) {
            System.out.println("MISMATCH case " + i + ": the " + (fused ? "fused single-hop" : "unfused") + " path ran across machines");
            bad++;
          } catch (IllegalArgumentException e) {
            if (i == 0) System.out.println("refused: " + e.getMessage());
          }
        }
        t.barrier(); // the refusals left nothing half-done: the world still meets
        String shuffled = shuffleDifference(t, wl, seed * 131 + i);
        if (shuffled != null) {
          System.out.println("MISMATCH seed " + seed + " case " + i + " shuffled combine rank " + r + ": " + shuffled
              + " (" + wl.describe() + ")");
          bad++;
        }
        System.out.println("case " + i + " " + (bad == 0 ? "ok" : "bad") + ": rank " + r + " on " + machine + " received "
            + wl.ref.rowsReceivedBy(r) + " rows (" + wl.describe() + ")");
      }
      return bad == 0 ? 0 : 1;
    }
  }

  /** The first output of rank r that differs between the two runs, or null. */
  static String difference(CpuRun a, CpuRun b, int r, Workload wl) {
    if (a.rows[r] != b.rows[r]) return "received rows " + a.rows[r] + " vs " + b.rows[r];
    long n = a.rows[r] * wl.rowBytes();
    RowBuffer ra = a.recv[r];
    RowBuffer rb = b.recv[r];
    if (n > 0 && MemorySegment.mismatch(ra.segment(), ra.offset(), ra.offset() + n, rb.segment(), rb.offset(), rb.offset() + n) != -1) {
      return "received row bytes differ";
    }
    if (!Arrays.equals(a.recvScales[r], b.recvScales[r])) return "fp8 scales differ";
    if (!Arrays.equals(bits(a.recvWeights[r]), bits(b.recvWeights[r]))) return "received weights differ";
    if (!Arrays.equals(a.slotCounts[r], b.slotCounts[r])) return "slot counts differ";
    if (a.pairs[r] != b.pairs[r]) return "received pairs " + a.pairs[r] + " vs " + b.pairs[r];
    if (!Arrays.equals(a.pairSrc[r], b.pairSrc[r])) return "pair source ranks differ";
    if (!Arrays.equals(a.pairToken[r], b.pairToken[r])) return "pair source tokens differ";
    if (!Arrays.equals(a.numTokensPerRank[r], b.numTokensPerRank[r])) return "pairs per destination differ";
    if (!Arrays.equals(a.isTokenInRank[r], b.isTokenInRank[r])) return "token-in-rank flags differ";
    for (int k = 0; k < 3; k++) if (a.rowCounts[k][r] != b.rowCounts[k][r]) return "row counts differ";
    long o = (long) wl.tokens[r] * wl.outRowBytes();
    if (o > 0 && MemorySegment.mismatch(a.out[r].segment(), 0, o, b.out[r].segment(), 0, o) != -1) return "combine outputs differ";
    return null;
  }

  private static int[] bits(float[] f) {
    int[] b = new int[f.length];
    for (int i = 0; i < f.length; i++) b[i] = Float.floatToRawIntBits(f[i]);
    return b;
  }

  /** With a short timeout: rank 1 never reaches the barrier the others wait in. */
  private static int stall(long timeoutMillis) throws InterruptedException {
    java.time.Duration timeout = java.time.Duration.ofMillis(timeoutMillis);
    var world = io.moeyard.engine.rendezvous.ProcessWorld.join(io.moeyard.engine.rendezvous.RankEnv.fromEnv(), Map.of("test", "stall"), timeout);
    try (ShmTransport t = ShmTransport.open(world, timeout)) {
      t.barrier();
      if (t.rank() == 1) {
        System.out.println("stalling");
        Thread.sleep(60_000);
      }
      long t0 = System.nanoTime();
      try {
        t.barrier();
      } finally {
        System.out.println("waited " + (System.nanoTime() - t0) / 1_000_000 + " ms");
      }
      return 0;
    }
  }

  /** See the class comment ({@code watch}); exits 3 on the watchers once they found the failure. */
  private static int watch(int victim, String how) throws InterruptedException {
    try (ShmTransport t = ShmTransport.join(Map.of("test", "watch"))) {
      t.barrier();
      if (t.rank() != victim) t.checkPeers(); // a healthy world: returns
      t.barrier(); // only now may the victim fail the world
      if (t.rank() == victim) {
        if (how.equals("abort")) t.abort(new IllegalStateException("rank " + victim + " gives up"));
        System.out.println("victim waiting");
        System.out.flush();
        Thread.sleep(60_000); // the test kills it; it must not leave (closing would tell the others)
        return 0;
      }
      System.out.println("watching");
      System.out.flush();
      while (true) {
        try {
          t.checkPeers();
        } catch (CollectiveException e) {
          String missing = e instanceof io.moeyard.engine.CollectiveTimeoutException c ? " " + c.missingRanks() : "";
          System.out.println("checkPeers threw " + e.getClass().getSimpleName() + missing + ": " + e.getMessage());
          break;
        }
        Thread.sleep(5);
      }
      try {
        t.barrier();
        System.out.println("next collective passed");
      } catch (CollectiveException e) {
        System.out.println("next collective threw " + e.getClass().getSimpleName() + ": " + e.getMessage());
      }
      return 3;
    }
  }

  /** Small dispatch + combine rounds until the world fails (a peer killed). */
  private static int loop() {
    try (ShmTransport t = ShmTransport.join(Map.of("test", "loop"))) {
      int ranks = t.size();
      int hidden = 128;
      int tokens = 32;
      int topk = 2;
      ExpertMap map = ExpertMap.trivial(t.topology(), ranks * 2);
      CommConfig cfg = CommConfig.of(tokens, hidden, topk, DType.BF16, DType.BF16);
      try (Communicator comm = Communicator.cpu(t, map, cfg); Arena arena = Arena.ofConfined()) {
        RowBuffer x = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
        RowBuffer out = RowBuffer.allocate(arena, tokens, hidden, DType.BF16);
        RowBuffer y = RowBuffer.allocate(arena, comm.receiveCapacity(), hidden, DType.BF16);
        SplittableRandom rnd = new SplittableRandom(t.rank());
        int[] idx = new int[tokens * topk];
        float[] w = new float[tokens * topk];
        for (int i = 0; i < tokens; i++) {
          int e = rnd.nextInt(ranks * 2);
          idx[i * topk] = e;
          idx[i * topk + 1] = (e + 1) % (ranks * 2);
          w[i * topk] = 0.5f;
          w[i * topk + 1] = 0.5f;
        }
        Routing routing = new Routing(tokens, topk, idx, w);
        for (long round = 0; ; round++) {
          Dispatched d = comm.dispatch(x, routing);
          comm.combine(d, y, out);
          if (round == 10) System.out.println("looping pid " + ProcessHandle.current().pid());
        }
      }
    }
  }
}
