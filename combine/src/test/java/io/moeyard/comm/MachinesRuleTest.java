package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The rule for ranks on several machines ({@link Machines}), on rank threads that pretend to sit
 * on machines of {@code perMachine} ranks: the fused node-level path runs and gives the
 * reference's bits, and so does the shuffled combine (whose homes send their rows to other
 * machines); the paths that store into other nodes' memory and a node split between machines are
 * refused on every rank alike, naming why, before anything is allocated or written. (That the node-level path stores only within a machine is shown between
 * processes that share no memory across pretend machines: {@code ClusterCpuProcessTest} in bench.)
 */
class MachinesRuleTest {
  private static final long SEED = TestSeed.fresh().value();

  /** A rank of a {@link CpuWorld} that says its world is split into machines of {@code perMachine} ranks. */
  record Pretend(Transport inner, int perMachine) implements Transport {
    @Override public int rank() { return inner.rank(); }
    @Override public int size() { return inner.size(); }
    @Override public Topology topology() { return inner.topology(); }
    @Override public Object[] allGather(Object mine) { return inner.allGather(mine); }
    @Override public <T> Object[] allGather(T mine, MessageCodec<T> codec) { return inner.allGather(mine, codec); }
    @Override public int machineOf(int r) { return r / perMachine; }
    @Override public void abort(Throwable cause) { inner.abort(cause); }
    @Override public void checkPeers() { inner.checkPeers(); }
    @Override public boolean peerStores() { return inner.peerStores(); }
    @Override public void sendRecv(MemorySegment[] send, MemorySegment[] recv) { inner.sendRecv(send, recv); }
    @Override public PeerMemory peerMemory(long bytes) { return inner.peerMemory(bytes); }
    @Override public boolean sharesAddressSpace() { return inner.sharesAddressSpace(); }
    @Override public boolean reachable(MemorySegment s) { return inner.reachable(s); }
    @Override public boolean reaches(int p) { return machineOf(p) == machineOf(rank()); }
  }

  private static int maxTokens(Workload wl) {
    return Math.max(1, Arrays.stream(wl.tokens).max().orElse(0));
  }

  @Test
  void theNodeLevelPathRunsAcrossMachinesAndGivesTheReferenceBits() {
    SplittableRandom rnd = new SplittableRandom(SEED);
    for (int c = 0; c < 12; c++) {
      int local = 1 + rnd.nextInt(3);
      int nodes = 2 + rnd.nextInt(3);
      int nodesPerMachine = nodes % 2 == 0 && rnd.nextBoolean() ? 2 : 1;
      Topology topo = new Topology(nodes, local);
      long s = SEED * 31 + c;
      Workload wl = c % 3 == 0 ? Workload.edge(s, topo, 24, c / 3 % Workload.EDGE_CASES) : Workload.random(s, topo, 24);
      CommConfig cfg = CommConfig.of(maxTokens(wl), wl.hidden, wl.topk, wl.dtype, wl.outType);
      String ctx = "seed " + SEED + " case " + c + " (" + wl.describe() + ", " + nodesPerMachine + " node(s) per machine)";
      try (CpuWorld world = CpuWorld.create(topo)) {
        List<String> problems = world.run(inner -> {
          Transport t = new Pretend(inner, local * nodesPerMachine);
          int r = t.rank();
          try (Communicator comm = Communicator.cpu(t, wl.map, cfg); Arena arena = Arena.ofConfined()) {
            Dispatched d = comm.dispatch(wl.x(r), wl.routing(r));
            String p = wl.ref.checkDispatch(r, d.received(), d.receivedRows(), wl.xs());
            RowBuffer out = RowBuffer.allocate(arena, wl.tokens[r], wl.hidden, wl.outType);
            comm.combine(d, wl.y(r), out);
            return p != null ? p : wl.ref.checkCombine(r, wl.w[r], wl.ys(), out);
          }
        });
        for (String p : problems) assertNull(p, ctx);
      }
    }
  }

  @Test
  void pathsThatStoreIntoOtherNodesAreRefusedOnEveryRank() {
    Topology topo = new Topology(2, 2);
    Workload wl = Workload.random(SEED, topo, 8);
    CommConfig base = CommConfig.of(maxTokens(wl), wl.hidden, wl.topk, wl.dtype, wl.outType);
    for (CommConfig cfg : List.of(base.withVariant(CommConfig.Variant.UNFUSED), base.withNodePath(CommConfig.NodePath.DIRECT))) {
      List<String> msgs = refusals(topo, 2, cfg, wl);
      for (int r = 0; r < msgs.size(); r++) {
        assertNotNull(msgs.get(r), "rank " + r + " was not refused " + cfg);
        assertTrue(msgs.get(r).contains("ranks 0 and 2 run on different machines"), msgs.get(r));
        assertTrue(msgs.get(r).startsWith("rank " + r + ": "), msgs.get(r));
      }
    }
  }

  @Test
  void aNodeSplitBetweenMachinesIsRefusedOnEveryRankNamingIt() {
    Topology topo = new Topology(2, 4); // nodes of 4, machines of 2: node 0 on machines 0 and 1
    Workload wl = Workload.random(SEED, topo, 8);
    CommConfig cfg = CommConfig.of(maxTokens(wl), wl.hidden, wl.topk, wl.dtype, wl.outType);
    List<String> msgs = refusals(topo, 2, cfg, wl);
    for (String m : msgs) {
      assertNotNull(m);
      assertTrue(m.contains("node 0 spans machines: rank 0 runs on machine 0, rank 2 on machine 1"), m);
    }
  }

  /** Each rank's IllegalArgumentException message from building a communicator of {@code cfg} (null: built). */
  private static List<String> refusals(Topology topo, int perMachine, CommConfig cfg, Workload wl) {
    try (CpuWorld world = CpuWorld.create(topo)) {
      return world.run(inner -> {
        try (Communicator comm = Communicator.cpu(new Pretend(inner, perMachine), wl.map, cfg)) {
          return null;
        } catch (IllegalArgumentException e) {
          return e.getMessage();
        }
      });
    }
  }

  /**
   * The shuffled combine across machines: targets read the homes of their machine and receive the
   * others' rows as messages; every token's row lands on its random target, by source rank then
   * token, equal to the reference's, whatever the targets (all on one rank, nobody's, spread).
   */
  @Test
  void theShuffledCombineSendsRowsBetweenMachines() {
    SplittableRandom rnd = new SplittableRandom(SEED + 2);
    for (int c = 0; c < 8; c++) {
      int local = 1 + rnd.nextInt(2);
      int nodes = 2 + rnd.nextInt(2);
      Topology topo = new Topology(nodes, local);
      Workload wl = c % 3 == 0 ? Workload.edge(SEED + c, topo, 16, c / 3 % Workload.EDGE_CASES) : Workload.random(SEED + c, topo, 16);
      CommConfig cfg = CommConfig.of(maxTokens(wl), wl.hidden, wl.topk, wl.dtype, wl.outType);
      int ranks = topo.worldSize();
      int mode = c % 3; // 0: random targets, 1: all to the last rank, 2: every token stays home
      int[][] next = new int[ranks][];
      for (int s = 0; s < ranks; s++) {
        next[s] = new int[wl.tokens[s]];
        for (int t = 0; t < next[s].length; t++) next[s][t] = mode == 0 ? rnd.nextInt(ranks) : mode == 1 ? ranks - 1 : s;
      }
      String ctx = "seed " + SEED + " case " + c + " mode " + mode + " (" + wl.describe() + ")";
      try (CpuWorld world = CpuWorld.create(topo)) {
        List<String> problems = world.run(inner -> {
          Transport t = new Pretend(inner, local);
          int r = t.rank();
          int arriving = 0;
          for (int[] n : next) for (int q : n) if (q == r) arriving++;
          try (Communicator comm = Communicator.cpu(t, wl.map, cfg); Arena arena = Arena.ofConfined()) {
            RowBuffer into = RowBuffer.allocate(arena, Math.max(1, arriving), wl.hidden, wl.outType);
            Dispatched d = comm.dispatch(wl.x(r), wl.routing(r));
            Arrivals a = comm.combineShuffled(d, wl.y(r), next[r], into);
            if (a.rows() != arriving) return "rank " + r + ": " + a.rows() + " rows arrived, expected " + arriving;
            int i = 0;
            for (int s = 0; s < ranks; s++) {
              RowBuffer expected = null;
              for (int k = 0; k < next[s].length; k++) {
                if (next[s][k] != r) continue;
                if (a.sourceRank(i) != s || a.sourceToken(i) != k) return "rank " + r + " arrival " + i + " is from the wrong token";
                if (expected == null) expected = wl.ref.combined(s, wl.w[s], wl.ys(), wl.outType);
                long len = into.rowBytes();
                if (MemorySegment.mismatch(into.segment(), into.rowOffset(i), into.rowOffset(i) + len,
                    expected.segment(), expected.rowOffset(k), expected.rowOffset(k) + len) >= 0) {
                  return "rank " + r + " arrival " + i + " (rank " + s + " token " + k + ") differs from the reference";
                }
                i++;
              }
            }
            return null;
          }
        });
        for (String p : problems) assertNull(p, ctx);
      }
    }
  }
}
