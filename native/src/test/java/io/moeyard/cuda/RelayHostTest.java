package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.DType;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The node-level path of the cuda backend on the host: the index math its kernels run
 * (relay_math.cuh: node rows, message layout, the relayed home sum's terms, the relay's staging
 * rows), its arithmetic lane by lane (host_check.cu) against the contract, and the host-side plan
 * ({@link RelayPath}: message and node-partial sizes, where expert ranks stage their partials,
 * rows sent across nodes) against brute force over the kit's reference on random multi-node
 * workloads. The device run is {@link RelayGpuTest}.
 */
class RelayHostTest {

  @BeforeEach
  void library() {
    NativeTestSupport.requireLibrary();
  }

  /** A random workload on nodes x local ranks (more than one node), layouts computed as the device does. */
  private record Case(Workload wl, KernelShape shape, int[][] ids, int[][] pairPos, int[][] totals, WorldCounts counts) {
    int nodes() {
      return shape.ranks() / shape.localRanks();
    }
  }

  private static Case randomCase(SplittableRandom rnd, int maxTokens) {
    int nodes = 2 + rnd.nextInt(3);
    int local = 1 + rnd.nextInt(4);
    int ranks = nodes * local;
    int s = 1 + rnd.nextInt(3);
    int experts = 1 + rnd.nextInt(ranks * s);
    int k = 1 + rnd.nextInt(Math.min(experts, 8));
    Workload wl = KernelCases.random(rnd, ranks, local, s, experts, k, 16, DType.BF16, maxTokens, rnd.nextInt(4) == 0 ? 0.5 : 0.1);
    return layouts(wl);
  }

  private static Case layouts(Workload wl) {
    KernelShape c = KernelCases.shape(wl);
    int ranks = c.ranks();
    int k = c.topk();
    int[][] ids = new int[ranks][];
    int[][] pairPos = new int[ranks][];
    int[][] totals = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      int tn = wl.tokens[r];
      ids[r] = NativeKernels.hostChooseReplicas(c.csrOffsets(), c.csrSlots(), c.slotsPerRank(), c.localRanks(), r, wl.idx[r], k);
      pairPos[r] = new int[tn * k];
      totals[r] = new int[c.slots() + ranks];
      NativeKernels.hostLayout(ids[r], tn, k, c.slotsPerRank(), c.slots(), ranks, 64, new int[tn * k], pairPos[r],
          new int[tn * k], new int[tn + 1], totals[r], new int[c.slots() + 1], new byte[tn * ranks]);
    }
    // what the node-level dispatch announces: the layout counts, then tokens per node
    int nodes = ranks / c.localRanks();
    int[][] announced = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      int[] rows = NativeKernels.hostNodeRows(ids[r], wl.tokens[r], k, c.slotsPerRank(), ranks, c.localRanks());
      // as LayoutPhase reads them back: counts, the routing's verdict (-1: none), tokens per node
      int nb = c.slots() + ranks;
      int[] read = Arrays.copyOf(totals[r], nb + 1 + nodes);
      read[nb] = -1;
      System.arraycopy(rows, wl.tokens[r] * nodes, read, nb + 1, nodes);
      announced[r] = RelayPath.announced(read, nb, nodes);
    }
    return new Case(wl, c, ids, pairPos, totals, new WorldCounts(wl.tokens.clone(), announced, c.slotsPerRank()));
  }

  private static boolean onNode(NaiveReference ref, int r, int t, int m, int local) {
    for (int d : ref.destinations(r, t)) if (d / local == m) return true;
    return false;
  }

  private static int tokensOnNode(Case c, int r, int m) {
    int n = 0;
    for (int t = 0; t < c.wl.tokens[r]; t++) if (onNode(c.wl.ref, r, t, m, c.shape.localRanks())) n++;
    return n;
  }

  /** Token t's row in the message to node m is its index among the tokens with a pair there. */
  @Test
  void nodeRowsNumberEachNodesTokens() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 60; iter++) {
        Case c = randomCase(rnd, iter % 10 == 0 ? 0 : 1 + rnd.nextInt(150));
        int nodes = c.nodes();
        int local = c.shape.localRanks();
        for (int r = 0; r < c.shape.ranks(); r++) {
          int tn = c.wl.tokens[r];
          int[] got = NativeKernels.hostNodeRows(c.ids[r], tn, c.shape.topk(), c.shape.slotsPerRank(), c.shape.ranks(), local);
          int[] want = new int[tn * nodes + nodes];
          for (int m = 0; m < nodes; m++) {
            int j = 0;
            for (int t = 0; t < tn; t++) want[t * nodes + m] = onNode(c.wl.ref, r, t, m, local) ? j++ : -1;
            want[tn * nodes + m] = j;
          }
          assertArrayEquals(want, got, "rank " + r + " " + c.wl);
        }
      }
    });
  }

  @Test
  void messageLayoutIsTheSameOnBothSides() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int iter = 0; iter < 500; iter++) {
      int t = rnd.nextInt(5000);
      int k = 1 + rnd.nextInt(16);
      int n = t == 0 ? 0 : rnd.nextInt(t + 1);
      int rowBytes = 1 + rnd.nextInt(20000);
      int sc = rnd.nextBoolean() ? 0 : 1 + rnd.nextInt(64);
      long[] got = NativeKernels.hostRelayMessage(t, k, n, rowBytes, sc);
      String at = seed + " T " + t + " K " + k + " n " + n;
      assertEquals(RelayBuffers.rowsAt(t, k), got[0], at);
      assertEquals(RelayBuffers.scalesAt(t, k, n, rowBytes), got[1], at);
      assertEquals(RelayBuffers.messageBytes(t, k, n, rowBytes, sc), got[2], at);
      assertTrue(got[0] % 64 == 0 && got[0] >= 8L * t * k && got[0] < 8L * t * k + 64, at);
      assertEquals(n == 0 ? 0 : got[0] + (long) n * rowBytes + 4L * n * sc, got[2], at);
    }
  }

  /**
   * The relayed home sum's terms: nodes in ascending order, the own node's pairs one by one (their
   * index among the token's pairs), one received node partial per other node with a pair; a run
   * per node. Up to 64 ranks (terms past one warp's lanes).
   */
  @Test
  void homeTermsWalkTheNodesInOrder() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int[][] shapes = {{2, 1}, {2, 4}, {4, 2}, {3, 5}, {8, 8}, {64, 1}, {32, 2}, {2, 32}};
    for (int iter = 0; iter < 2000; iter++) {
      int[] sh = shapes[rnd.nextInt(shapes.length)];
      int nodes = sh[0];
      int local = sh[1];
      int ranks = nodes * local;
      long mask = 0;
      for (int d = 0; d < ranks; d++) if (rnd.nextInt(4) == 0) mask |= 1L << d;
      if (iter % 100 == 0) mask = 0;
      if (iter % 100 == 1) mask = ranks == 64 ? -1L : (1L << ranks) - 1;
      int node = rnd.nextInt(nodes);
      List<Integer> want = new ArrayList<>();
      long ends = 0;
      int pair = 0;
      for (int m = 0; m < nodes; m++) {
        int before = want.size();
        boolean any = false;
        for (int d = m * local; d < (m + 1) * local; d++) {
          if ((mask >>> d & 1) == 0) continue;
          if (m == node) {
            want.add(m);
            want.add(pair);
          } else if (!any) {
            want.add(m);
            want.add(-1);
          }
          any = true;
          pair++;
        }
        if (want.size() > before) ends |= 1L << (want.size() / 2 - 1);
      }
      want.add((int) ends);
      want.add((int) (ends >>> 32));
      int[] got = NativeKernels.hostRelayHomeTerms(mask, node, ranks, local);
      assertArrayEquals(want.stream().mapToInt(Integer::intValue).toArray(), got,
          seed + " mask " + Long.toHexString(mask) + " node " + node + " of " + nodes + " x " + local);
    }
  }

  /**
   * Where an expert rank stores a pair partial of a source on another node ({@link
   * RelayPath#stageRows}) is where the relay's node sum reads it (relay_math.cuh's run_start +
   * pairPos): on every expert rank, for every pair, the same row; the rows of one relayed source
   * are distinct and within its slot. And some pair lands after another rank's run (run starts
   * exercised).
   */
  @Test
  void expertRanksStageWhereTheRelayReads() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      int afterARun = 0;
      for (int iter = 0; iter < 60; iter++) {
        Case c = randomCase(rnd, 1 + rnd.nextInt(120));
        int ranks = c.shape.ranks();
        int local = c.shape.localRanks();
        int k = c.shape.topk();
        int nP = c.shape.slots();
        int maxTokens = Math.max(1, c.wl.maxTokens());
        int perSource = maxTokens * Math.min(k, local);
        long[] stagingOf = new long[ranks];
        for (int q = 0; q < ranks; q++) stagingOf[q] = 0x1000L * (q + 1);
        // per relay and source: the rows the relay reads
        for (int src = 0; src < ranks; src++) {
          for (int m = 0; m < c.nodes(); m++) {
            if (m == src / local) continue;
            int relay = m * local + src % local;
            int slot = m > src / local ? src / local : src / local - 1;
            int[] pairsTo = Arrays.copyOfRange(c.totals[src], nP, nP + ranks);
            int[] reads = NativeKernels.hostRelayStagingRows(c.ids[src], c.pairPos[src], pairsTo, c.wl.tokens[src], k,
                c.shape.slotsPerRank(), ranks, local, m);
            Set<Integer> seen = new HashSet<>();
            for (int d = m * local; d < (m + 1) * local; d++) {
              long[] rows = new long[ranks];
              int[] row = new int[ranks];
              RelayPath.stageRows(c.counts, nP, ranks, local, d, perSource, stagingOf, rows, row);
              assertEquals(stagingOf[relay], rows[src], "staging of source " + src + " on rank " + d);
              int pairBase = 0;
              for (int q = 0; q < src; q++) pairBase += c.totals[q][nP + d];
              for (int t = 0; t < c.wl.tokens[src]; t++) {
                int first = -1;
                for (int j = 0; j < k; j++) {
                  int p = c.ids[src][t * k + j];
                  if (p >= 0 && p / c.shape.slotsPerRank() == d) {
                    first = j;
                    break;
                  }
                }
                if (first < 0) continue;
                int written = row[src] + pairBase + c.pairPos[src][t * k + first];
                int read = slot * perSource + reads[t * k + first];
                String at = c.wl + " source " + src + " token " + t + " expert rank " + d;
                assertEquals(read, written, at);
                assertTrue(seen.add(written), "row " + written + " twice, " + at);
                assertTrue(written >= slot * perSource && written < (slot + 1) * perSource, at);
                if (reads[t * k + first] > c.pairPos[src][t * k + first]) afterARun++;
              }
            }
            int want = 0;
            for (int t = 0; t < c.wl.tokens[src]; t++) {
              for (int d : c.wl.ref.destinations(src, t)) if (d / local == m) want++;
            }
            assertEquals(want, seen.size(), "pairs of source " + src + " on node " + m + " " + c.wl);
            assertEquals(want, Arrays.stream(reads).filter(v -> v >= 0).count(), "reads of source " + src + " on node " + m);
          }
        }
      }
      assertTrue(afterARun > 0, "no pair was staged after another rank's run");
    });
  }

  /**
   * What the home sum reads (relay_math.cuh's terms: a home-window row per own-node pair, a
   * received node partial row per other node) is what was written there, against the reference's
   * pairs: the own node's partials where its expert ranks store them (the layout's pair index of
   * the pair's first selection), in ascending rank; the node partial of node m at the row its relay
   * writes it (the token's index among the home's tokens with a pair on m), inside the rows the
   * channel brings from that relay, each received row read by exactly one token.
   */
  @Test
  void homeReadsWhereExpertRanksAndRelaysWrote() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      int remoteTerms = 0;
      for (int iter = 0; iter < 60; iter++) {
        Case c = randomCase(rnd, iter % 10 == 0 ? 0 : 1 + rnd.nextInt(120));
        int ranks = c.shape.ranks();
        int local = c.shape.localRanks();
        int nodes = c.nodes();
        int k = c.shape.topk();
        int s = c.shape.slotsPerRank();
        for (int r = 0; r < ranks; r++) {
          int tn = c.wl.tokens[r];
          int node = r / local;
          int[] pairIdx = new int[tn * k];
          int[] pairOffset = new int[tn + 1];
          NativeKernels.hostLayout(c.ids[r], tn, k, s, c.shape.slots(), ranks, 64, new int[tn * k], new int[tn * k], pairIdx,
              pairOffset, new int[c.shape.slots() + ranks], new int[c.shape.slots() + 1], new byte[tn * ranks]);
          int[] nodeRows = NativeKernels.hostNodeRows(c.ids[r], tn, k, s, ranks, local);
          long[] send = new long[ranks];
          long[] recv = new long[ranks];
          RelayPath.nodePartialSizes(c.counts, c.shape.slots(), ranks, local, r, 1, send, recv);
          int[] readsFrom = new int[nodes];
          int[] before = new int[nodes]; // the home's tokens so far with a pair on each node
          for (int t = 0; t < tn; t++) {
            String at = "home " + r + " token " + t + " " + c.wl;
            int[] dests = c.wl.ref.destinations(r, t);
            long mask = 0;
            for (int d : dests) mask |= 1L << d;
            int[] terms = NativeKernels.hostRelayHomeTerms(mask, node, ranks, local);
            List<Integer> wantOwn = new ArrayList<>();
            boolean[] onNode = new boolean[nodes];
            for (int d : dests) {
              onNode[d / local] = true;
              if (d / local != node) continue;
              int first = -1;
              for (int j = 0; j < k && first < 0; j++) if (c.ids[r][t * k + j] >= 0 && c.ids[r][t * k + j] / s == d) first = j;
              wantOwn.add(pairIdx[t * k + first]);
            }
            List<Integer> gotOwn = new ArrayList<>();
            int remote = 0;
            for (int i = 0; i + 1 < terms.length - 2; i += 2) {
              int m = terms[i];
              int pi = terms[i + 1];
              if (pi >= 0) {
                assertEquals(node, m, "a pair partial of another node, " + at);
                gotOwn.add(pairOffset[t] + pi);
                continue;
              }
              remote++;
              assertTrue(m != node && onNode[m], "node partial of node " + m + ", " + at);
              int row = nodeRows[t * nodes + m];
              int q = m * local + r % local;
              assertEquals(before[m], row, "received row of node " + m + ", " + at);
              assertTrue(row < recv[q], "row " + row + " of the " + recv[q] + " node partials rank " + q + " sends, " + at);
              readsFrom[m]++;
            }
            assertEquals(wantOwn, gotOwn, "own node's partials, " + at);
            int wantRemote = 0;
            for (int m = 0; m < nodes; m++) {
              if (onNode[m] && m != node) wantRemote++;
              if (onNode[m]) before[m]++;
            }
            assertEquals(wantRemote, remote, "node partials read, " + at);
            remoteTerms += remote;
          }
          for (int m = 0; m < nodes; m++) {
            if (m == node) continue;
            assertEquals(recv[m * local + r % local], readsFrom[m], "rows received from node " + m + " and read, home " + r);
          }
        }
      }
      assertTrue(remoteTerms > 0, "no token read a node partial");
    });
  }

  /**
   * The channel's sizes agree pairwise on every rank (a mismatch would leave an NCCL group
   * waiting), only rail-aligned pairs on different nodes exchange anything, and the dispatch
   * messages are the announced tokens' messages.
   */
  @Test
  void channelSizesAgreeOnBothEnds() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 60; iter++) {
        Case c = randomCase(rnd, rnd.nextInt(100));
        int ranks = c.shape.ranks();
        int local = c.shape.localRanks();
        int nP = c.shape.slots();
        int rowBytes = 1 + rnd.nextInt(9000);
        int sc = rnd.nextBoolean() ? 0 : 1 + rnd.nextInt(8);
        long[][] send = new long[ranks][ranks];
        long[][] recv = new long[ranks][ranks];
        long[][] nodeSend = new long[ranks][ranks];
        long[][] nodeRecv = new long[ranks][ranks];
        for (int r = 0; r < ranks; r++) {
          RelayPath.messageSizes(c.counts, nP, ranks, local, r, c.shape.topk(), rowBytes, sc, send[r], recv[r]);
          RelayPath.nodePartialSizes(c.counts, nP, ranks, local, r, 6, nodeSend[r], nodeRecv[r]);
          for (int q = 0; q < ranks; q++) {
            boolean rail = q % local == r % local && q / local != r / local;
            int n = rail ? tokensOnNode(c, r, q / local) : 0;
            assertEquals(RelayBuffers.messageBytes(c.wl.tokens[r], c.shape.topk(), n, rowBytes, sc), send[r][q],
                "message " + r + " -> " + q + " " + c.wl);
            if (!rail) assertEquals(0, recv[r][q] + nodeSend[r][q] + nodeRecv[r][q], r + " <- " + q);
            assertEquals(6L * n, nodeRecv[r][q], "node partials " + q + " -> " + r);
          }
        }
        assertNull(DeviceChannel.mismatch(send, recv), c.wl.toString());
        assertNull(DeviceChannel.mismatch(nodeSend, nodeRecv), c.wl.toString());
      }
    });
  }

  /**
   * Rows sent across nodes: through the relay one per (token, remote node) with a pair there,
   * single-hop fused one per token-rank pair on another node, unfused one per selection there.
   */
  @Test
  void rowsSentAcrossNodesCountThePathThatRan() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 40; iter++) {
        Case c = randomCase(rnd, rnd.nextInt(100));
        int local = c.shape.localRanks();
        int s = c.shape.slotsPerRank();
        for (int r = 0; r < c.shape.ranks(); r++) {
          int relayed = 0;
          int pairs = 0;
          int selections = 0;
          for (int t = 0; t < c.wl.tokens[r]; t++) {
            for (int m = 0; m < c.nodes(); m++) if (m != r / local && onNode(c.wl.ref, r, t, m, local)) relayed++;
            for (int d : c.wl.ref.destinations(r, t)) if (d / local != r / local) pairs++;
            for (int j = 0; j < c.shape.topk(); j++) {
              int p = c.wl.ref.slot(r, t, j);
              if (p >= 0 && p / s / local != r / local) selections++;
            }
          }
          String at = "rank " + r + " " + c.wl;
          assertEquals(relayed, RelayPath.rowsSentAcrossNodes(c.counts, c.shape.slots(), c.shape.ranks(), local, r), at);
          assertEquals(pairs, c.counts.rowsSentAcrossNodes(r, local, true), at);
          assertEquals(selections, c.counts.rowsSentAcrossNodes(r, local, false), at);
        }
      }
    });
  }

  /**
   * One token's relayed combine (pair partials, each remote node's partial at its relay, the home
   * sum in node order), with the kernels' row sums lane by lane, equals the contract's combine for
   * every home placement; some tokens' two-level sums differ from one level, or this could not
   * catch a relay that sums across nodes.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void relayedCombineMatchesTheContract(DType dt) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int differs = 0;
    for (int iter = 0; iter < 600; iter++) {
      Topology topo = iter % 97 == 0 ? new Topology(32, 2) : new Topology(2 + rnd.nextInt(3), 1 + rnd.nextInt(4));
      int ranks = topo.worldSize();
      int h = iter % 5 == 0 ? 8 * (1 + rnd.nextInt(40)) : 1 + rnd.nextInt(70);
      CombineArithmeticHostTest.Token tk = CombineArithmeticHostTest.Token.random(rnd, ranks, h, dt, iter % 50 == 0);
      int home = rnd.nextInt(ranks);
      byte[] got = NativeKernels.hostRelayCombineToken(KernelShape.code(dt), tk.bytes(), tk.w(), tk.groups(), tk.gr(), ranks,
          topo.localRanks(), home, h);
      float[] want = CombineArithmeticHostTest.contractCombine(tk.values(), tk.w(), tk.groups(), tk.gr(), topo, dt);
      String diff = CombineArithmeticHostTest.firstDifference(want, got, dt);
      if (diff != null) fail(seed + ": " + dt + " " + topo + " home " + home + " " + tk + ": " + diff);
      if (CombineArithmeticHostTest.firstDifference(CombineArithmeticHostTest.contractCombine(tk.values(), tk.w(), tk.groups(),
          tk.gr(), Topology.singleNode(ranks), dt), got, dt) != null) {
        differs++;
      }
    }
    assertTrue(differs > 0, seed + ": no token came out different from the one-level sum");
  }

  @Test
  void badHostArgumentsThrowNotCrash() {
    assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostNodeRows(new int[2], 2, 2, 1, 6, 4));
    assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostNodeRows(new int[3], 2, 2, 1, 4, 2));
    assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostRelayHomeTerms(1, 0, 65, 1));
    assertThrows(IllegalArgumentException.class,
        () -> NativeKernels.hostRelayCombineToken(0, new byte[4], new float[1], new int[] {1}, new int[] {2}, 2, 1, 0, 2));
    assertThrows(IllegalArgumentException.class,
        () -> NativeKernels.hostRelayCombineToken(0, new byte[4], new float[1], new int[] {1}, new int[] {1}, 2, 1, 2, 2));
    assertThrows(IllegalArgumentException.class,
        () -> NativeKernels.hostRelayCombineToken(3, new byte[4], new float[1], new int[] {1}, new int[] {1}, 2, 1, 0, 2));
  }

  /**
   * The relay launchers refuse a node outside [0, M), a message slot too small for T tokens and a
   * node-partial slot of fewer rows than tokens before any launch (they would write past their
   * buffers). Only without a GPU: the addresses are made up, and a launcher that let them through
   * would run its kernel on them; without a device that launch fails otherwise.
   */
  @Test
  void relayLaunchersRefuseWhatWouldOverrunTheirSlots() {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "made-up addresses: only where no kernel can run");
    long p = 0x1000;
    // 4 ranks, 2 per node: M = 2; message slot of 8 tokens of top-2, 256-byte rows: align64(128) + 8 x 256
    long slot = RelayBuffers.messageBytes(8, 2, 8, 256, 0);
    assertInvalid(() -> NativeKernels.relayPack(p, 0, 0, p, p, p, p, 8, 2, 2, 2, 256, p, slot, 0));
    assertInvalid(() -> NativeKernels.relayPack(p, 0, 0, p, p, p, p, 8, 2, 2, -1, 256, p, slot, 0));
    assertInvalid(() -> NativeKernels.relayPack(p, 0, 0, p, p, p, p, 8, 2, 2, 0, 256, p, slot - 1, 0));
    assertInvalid(() -> NativeKernels.relayNodeSum(0, p, p, p, p, p, 8, 2, 1, 4, 2, 2, 128, p, 0));
    assertInvalid(() -> NativeKernels.relayHome(0, p, p, p, p, p, 8, 2, 1, 4, 2, 2, 128, 8, p, 0));
    assertInvalid(() -> NativeKernels.relayHome(0, p, p, p, p, p, 8, 2, 1, 4, 2, 0, 128, 7, p, 0));
  }

  private static void assertInvalid(org.junit.jupiter.api.function.Executable call) {
    CudaException e = assertThrows(CudaException.class, call);
    assertTrue(e.getMessage().contains("cudaErrorInvalidValue"), e.getMessage());
  }

  @Test
  void channelChecksNameTheEntry() {
    assertNull(DeviceChannel.mismatch(new long[][] {{0, 5}, {7, 0}}, new long[][] {{0, 7}, {5, 0}}));
    assertEquals("rank 0 sends 5 bytes to rank 1, which expects 4",
        DeviceChannel.mismatch(new long[][] {{0, 5}, {7, 0}}, new long[][] {{0, 7}, {4, 0}}));
    assertEquals("rank 1 sends 7 bytes to rank 0, which expects 0",
        DeviceChannel.mismatch(new long[][] {{0, 5}, {7, 0}}, new long[][] {{0, 0}, {5, 0}}));
    assertNull(DeviceChannel.badSide("send", new long[] {0, 0x100}, new long[] {0, 8}, 2));
    assertEquals("send: 1 addresses and 2 sizes for 2 ranks", DeviceChannel.badSide("send", new long[1], new long[2], 2));
    assertEquals("receive bytes for rank 1 is -3", DeviceChannel.badSide("receive", new long[2], new long[] {0, -3}, 2));
    assertEquals("send address for rank 0 is 0 (8 bytes)", DeviceChannel.badSide("send", new long[2], new long[] {8, 0}, 2));
  }

  /** Over NCCL (a stand-in here): the exchange is one group on the caller's stream; closing destroys the channel's communicator. */
  @Test
  void ncclChannelIsOneGroup() {
    NcclChannelTest.Log log = new NcclChannelTest.Log();
    DeviceChannel ch = new NcclDeviceChannel(NcclChannel.create(new byte[NcclUniqueIds.BYTES], 2, 0, log), NcclChannel.NO_WATCH);
    log.take();
    ch.exchange(new long[] {0, 0x100}, new long[] {0, 64}, new long[] {0, 0x200}, new long[] {0, 32}, 0x7);
    assertEquals(List.of("groupStart", "send 0x100 64 to 1 on 0x7", "recv 0x200 32 from 1 on 0x7", "groupEnd"), log.take());
    ch.close();
    assertEquals(List.of("finalize 0xc0", "destroy 0xc0"), log.take());
  }
}
