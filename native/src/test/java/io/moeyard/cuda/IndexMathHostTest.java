package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The __host__ __device__ index math of index_math.cuh, run on the host through JNI, against the
 * kit's {@link NaiveReference}. Needs the library, not a GPU: runs here and in CI. Random cases
 * use a fresh seed each run, named in their failures (replay with -Dmoeyard.test.seed).
 */
class IndexMathHostTest {

  private static final boolean HEAVY = Boolean.getBoolean("moeyard.test.heavy");
  /** This run's seed, named in every random case's failure. */
  private static final TestSeed SEED = TestSeed.fresh();

  @BeforeEach
  void library() {
    NativeTestSupport.requireLibrary();
  }

  // ---------------------------------------------------------------------------------------------
  // replica choice
  // ---------------------------------------------------------------------------------------------

  @Test
  void replicaChoiceByHand() {
    // R = 4, S = 2 (P = 8), two nodes of 2 ranks. Expert 0 -> {1, 5, 6}; expert 1 -> {4, 7}.
    int[] offs = {0, 3, 5};
    int[] slots = {1, 5, 6, 4, 7};
    int[] topk = {0, 1, 0, 1, 0, 1}; // 3 tokens, K = 2
    // rank 0: expert 0 on own rank (slot 1); expert 1 nowhere on node 0 -> all {4,7}[(0+t)%2]
    assertArrayEquals(new int[] {1, 4, 1, 7, 1, 4}, NativeKernels.hostChooseReplicas(offs, slots, 2, 2, 0, topk, 2));
    // rank 1: expert 0 not on rank 1, on node 0 -> slot 1; expert 1 -> all {4,7}[(1+t)%2]
    assertArrayEquals(new int[] {1, 7, 1, 4, 1, 7}, NativeKernels.hostChooseReplicas(offs, slots, 2, 2, 1, topk, 2));
    // rank 2 (slots 4,5): expert 0 -> own slot 5; expert 1 -> own slot 4
    assertArrayEquals(new int[] {5, 4, 5, 4, 5, 4}, NativeKernels.hostChooseReplicas(offs, slots, 2, 2, 2, topk, 2));
    // rank 3 (slots 6,7): own replicas 6 and 7
    assertArrayEquals(new int[] {6, 7, 6, 7, 6, 7}, NativeKernels.hostChooseReplicas(offs, slots, 2, 2, 3, topk, 2));
    // -1 stays -1
    assertArrayEquals(new int[] {-1, 5}, NativeKernels.hostChooseReplicas(offs, slots, 2, 2, 2, new int[] {-1, 0}, 2));
  }

  @Test
  void replicaChoiceRotatesOverSameRankReplicas() {
    // R = 2, S = 4, one node; expert 0 has slots {0, 2, 3} (three on rank 0), {5} on rank 1.
    int[] offs = {0, 4};
    int[] slots = {0, 2, 3, 5};
    int[] topk = new int[6]; // 6 tokens, K = 1, all expert 0
    assertArrayEquals(new int[] {0, 2, 3, 0, 2, 3}, NativeKernels.hostChooseReplicas(offs, slots, 4, 2, 0, topk, 1));
    assertArrayEquals(new int[] {5, 5, 5, 5, 5, 5}, NativeKernels.hostChooseReplicas(offs, slots, 4, 2, 1, topk, 1));
  }

  @Test
  void replicaChoiceMatchesReference() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < (HEAVY ? 2000 : 300); iter++) {
        int ranks = 1 + rnd.nextInt(8);
        int local = divisor(rnd, ranks);
        int s = 1 + rnd.nextInt(6);
        int p = ranks * s;
        int experts = 1 + rnd.nextInt(p);
        int k = 1 + rnd.nextInt(Math.min(experts, 16));
        ExpertMap map = Workload.randomMap(rnd, new Topology(ranks / local, local), s, experts);
        KernelShape cfg = KernelShape.of(map, CommConfig.of(50, 128, k, DType.BF16, DType.BF16));
        int[] tokens = new int[ranks];
        int[][] idx = new int[ranks][];
        for (int r = 0; r < ranks; r++) {
          tokens[r] = rnd.nextInt(50);
          idx[r] = Workload.randomRouting(rnd, tokens[r], experts, k, 0.1);
        }
        NaiveReference ref = new NaiveReference(map, idx, tokens, k);
        for (int r = 0; r < ranks; r++) {
          int[] got = NativeKernels.hostChooseReplicas(cfg.csrOffsets(), cfg.csrSlots(), s, local, r, idx[r], k);
          assertArrayEquals(slots(ref, r, tokens[r]), got, map.toString());
        }
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // FUSCO receive rows
  // ---------------------------------------------------------------------------------------------

  @Test
  void recvRowsFormulaMatchesEnumeration() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < (HEAVY ? 2000 : 300); iter++) {
        int ranks = 1 + rnd.nextInt(8);
        int s = 1 + rnd.nextInt(8);
        int[] counts = new int[ranks * s];
        for (int i = 0; i < counts.length; i++) {
          counts[i] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(20);
        }
        // brute force: walk slots, then source ranks, then j
        int total = Arrays.stream(counts).sum();
        int[] q = new int[3 * total];
        int[] want = new int[total];
        int next = 0;
        for (int ls = 0; ls < s; ls++) {
          for (int r = 0; r < ranks; r++) {
            for (int j = 0; j < counts[r * s + ls]; j++) {
              q[3 * next] = r;
              q[3 * next + 1] = ls;
              q[3 * next + 2] = j;
              want[next] = next;
              next++;
            }
          }
        }
        assertArrayEquals(want, NativeKernels.hostRecvRows(counts, ranks, s, q));

        int[] off = NativeKernels.hostRecvOffsets(counts, ranks, s);
        assertEquals(s + (s + 1) + ranks * s + (ranks * s + 1), off.length);
        int at = 0;
        for (int ls = 0; ls < s; ls++) { // slotTotal
          int tot = 0;
          for (int r = 0; r < ranks; r++) {
            tot += counts[r * s + ls];
          }
          assertEquals(tot, off[at++], "slotTotal " + ls);
        }
        int base = 0;
        for (int ls = 0; ls < s; ls++) { // slotBase
          assertEquals(base, off[at++], "slotBase " + ls);
          base += off[ls];
        }
        assertEquals(total, off[at++], "slotBase[S]");
        for (int r = 0; r < ranks; r++) { // rowBase = row of j = 0
          for (int ls = 0; ls < s; ls++) {
            int rb = off[at++];
            int[] one = NativeKernels.hostRecvRows(counts, ranks, s, new int[] {r, ls, 0});
            assertEquals(one[0], rb, "rowBase r=" + r + " ls=" + ls);
          }
        }
        int run = 0;
        for (int i = 0; i < ranks * s; i++) { // stagingPrefix ([src][slot] order)
          assertEquals(run, off[at++], "stagingPrefix " + i);
          run += counts[i];
        }
        assertEquals(total, off[at]);
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // the layout pipeline (chunked, as on the device) against brute force
  // ---------------------------------------------------------------------------------------------

  @Test
  void layoutMatchesBruteForceOnRandomConfigs() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < (HEAVY ? 600 : 120); iter++) {
        int ranks = 1 + rnd.nextInt(8);
        int local = divisor(rnd, ranks);
        int s = 1 + rnd.nextInt(5);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 16));
        int maxTokens = rnd.nextInt(4) == 0 ? 400 : 40;
        Workload wl = KernelCases.random(rnd, ranks, local, s, experts, k, 128, DType.BF16, maxTokens, 0.15);
        int chunk = new int[] {1, 2, 3, 7, 32, 128, 1000}[rnd.nextInt(7)];
        checkLayout(wl, chunk);
      }
    });
  }

  @Test
  void layoutEdgeCases() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      // zero tokens everywhere
      checkLayout(KernelCases.random(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0), 128);
      // top-k 1
      checkLayout(KernelCases.random(rnd, 4, 4, 3, 12, 1, 128, DType.BF16, 300, 0.0), 128);
      checkLayout(KernelCases.random(rnd, 4, 4, 3, 12, 1, 128, DType.BF16, 300, 0.0), 5);
      // every entry -1
      checkLayout(KernelCases.random(rnd, 3, 1, 2, 6, 4, 128, DType.BF16, 50, 1.0), 7);
      // all tokens to one expert (expert 0 on rank 0), top-k 1
      var cfg = KernelCases.trivial(4, 2, 2, 128, 1, DType.BF16);
      checkLayout(KernelCases.routed(cfg, new int[] {300, 0, 130, 1}, (r, t, j) -> 0, 1), 128);
      // a rank that receives nothing: experts of rank 3 are never selected
      var cfg2 = KernelCases.trivial(4, 4, 2, 128, 3, DType.BF16);
      checkLayout(KernelCases.routed(cfg2, new int[] {50, 70, 0, 33}, (r, t, j) -> (t + 2 * j + r) % 6, 1), 16);
      // 64 ranks (the rank masks' full width), top-16 spread over all ranks
      checkLayout(KernelCases.random(rnd, 64, 8, 2, 128, 16, 128, DType.BF16, 150, 0.05), 64);
      // full top-k 16 onto 16 experts: every token on every rank
      var cfg3 = KernelCases.trivial(4, 2, 4, 128, 16, DType.BF16);
      checkLayout(KernelCases.routed(cfg3, new int[] {129, 3, 0, 200}, (r, t, j) -> (j + t) % 16, 1), 128);
    });
  }

  /** The slot of every entry of rank r's routing, -1 for -1. */
  private static int[] slots(NaiveReference ref, int r, int tokens) {
    int k = ref.topk();
    int[] out = new int[tokens * k];
    for (int t = 0; t < tokens; t++) for (int j = 0; j < k; j++) out[t * k + j] = ref.slot(r, t, j);
    return out;
  }

  /** Runs the host layout of every rank and checks every output against brute force. */
  static void checkLayout(Workload wl, int chunk) {
    var c = KernelCases.shape(wl);
    NaiveReference ref = wl.ref;
    int ranks = c.ranks();
    int s = c.slotsPerRank();
    int p = c.slots();
    int k = c.topk();
    int[] tokens = wl.tokens;
    int[][] ids = new int[ranks][];
    int[][] pos = new int[ranks][];
    int[][] totals = new int[ranks][];
    String ctx = wl + " chunk=" + chunk + " " + wl.map;
    for (int r = 0; r < ranks; r++) {
      int tn = tokens[r];
      ids[r] = NativeKernels.hostChooseReplicas(c.csrOffsets(), c.csrSlots(), s, c.localRanks(), r, wl.idx[r], k);
      assertArrayEquals(slots(ref, r, tn), ids[r], ctx);
      pos[r] = new int[tn * k];
      int[] pairPos = new int[tn * k];
      int[] pairIdx = new int[tn * k];
      int[] pairOff = new int[tn + 1];
      totals[r] = new int[p + ranks];
      int[] slotPrefix = new int[p + 1];
      byte[] inRank = new byte[tn * ranks];
      NativeKernels.hostLayout(ids[r], tn, k, s, p, ranks, chunk, pos[r], pairPos, pairIdx, pairOff, totals[r],
          slotPrefix, inRank);
      // pair offsets: prefix of the number of distinct destination ranks
      int[] wantOff = new int[tn + 1];
      for (int t = 0; t < tn; t++) {
        wantOff[t + 1] = wantOff[t] + ref.destinations(r, t).length;
      }
      assertArrayEquals(wantOff, pairOff, "pairOffset " + ctx);
      assertArrayEquals(wantOff, NativeKernels.hostPairOffsets(ids[r], tn, k, s), "hostPairOffsets " + ctx);
      int[] wantTotals = new int[p + ranks];
      int[] seenSlot = new int[p]; // tokens so far that selected each slot
      int[] seenRank = new int[ranks]; // tokens so far that went to each rank
      for (int t = 0; t < tn; t++) {
        int[] dests = ref.destinations(r, t);
        for (int d = 0; d < ranks; d++) {
          boolean in = Arrays.binarySearch(dests, d) >= 0;
          assertEquals(in ? 1 : 0, inRank[t * ranks + d], "isTokenInRank " + ctx);
          if (in) {
            wantTotals[p + d]++;
          }
        }
        for (int j = 0; j < k; j++) {
          int sl = ids[r][t * k + j];
          int o = t * k + j;
          if (sl < 0) {
            assertEquals(-1, pos[r][o]);
            assertEquals(-1, pairPos[o]);
            assertEquals(-1, pairIdx[o]);
            continue;
          }
          wantTotals[sl]++;
          int d = sl / s;
          assertEquals(seenSlot[sl], pos[r][o], "pos " + ctx);
          assertEquals(seenRank[d], pairPos[o], "pairPos " + ctx);
          assertEquals(wantOff[t] + Arrays.binarySearch(dests, d), pairIdx[o], "pairIdx " + ctx);
        }
        for (int j = 0; j < k; j++) {
          if (ids[r][t * k + j] >= 0) {
            seenSlot[ids[r][t * k + j]]++;
          }
        }
        for (int d : dests) {
          seenRank[d]++;
        }
      }
      assertArrayEquals(wantTotals, totals[r], "totals " + ctx);
      int[] wantPrefix = new int[p + 1];
      for (int q = 0; q < p; q++) {
        wantPrefix[q + 1] = wantPrefix[q] + wantTotals[q];
      }
      assertArrayEquals(wantPrefix, slotPrefix, "slotPrefix " + ctx);
    }
    // FUSCO rows: rowBase (from the destination's counts) + j == the reference's row
    for (int d = 0; d < ranks; d++) {
      int[] counts = new int[ranks * s];
      for (int r = 0; r < ranks; r++) {
        System.arraycopy(totals[r], d * s, counts, r * s, s);
      }
      int[] off = NativeKernels.hostRecvOffsets(counts, ranks, s);
      int rowBaseAt = s + s + 1;
      for (int r = 0; r < ranks; r++) {
        for (int o = 0; o < tokens[r] * k; o++) {
          int sl = ids[r][o];
          if (sl >= 0 && sl / s == d) {
            int row = off[rowBaseAt + r * s + sl % s] + pos[r][o];
            assertEquals(ref.row(r, o / k, o % k), row, "row of rank " + r + " selection " + o + " on " + d + " " + ctx);
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // chunks
  // ---------------------------------------------------------------------------------------------

  @Test
  void chunkRangesCoverExactly() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      long[] ns = {0, 1, 127, 128, 129, 1024, 4096L * 7168};
      for (int iter = 0; iter < 200; iter++) {
        long n = iter < ns.length ? ns[iter] : rnd.nextInt(100_000);
        int size = 1 + rnd.nextInt(iter % 2 == 0 ? 10 : 5000);
        long[] r = NativeKernels.hostChunkRanges(n, size);
        long chunks = (n + size - 1) / size;
        assertEquals(2 * chunks, r.length, "n=" + n + " size=" + size);
        long at = 0;
        for (int c = 0; c < chunks; c++) {
          assertEquals(at, r[2 * c]);
          assertEquals(Math.min(n, at + size), r[2 * c + 1]);
          at = r[2 * c + 1];
        }
        assertEquals(n, at);
      }
      assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostChunkRanges(10, 0));
    });
  }

  @Test
  void findChunkSkipsEmptyChunks() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < 300; iter++) {
        int n = 1 + rnd.nextInt(40);
        int[] prefix = new int[n + 1];
        prefix[0] = rnd.nextInt(3);
        for (int c = 0; c < n; c++) {
          prefix[c + 1] = prefix[c] + (rnd.nextInt(3) == 0 ? 0 : rnd.nextInt(10));
        }
        int[] rows = new int[prefix[n] + 4];
        for (int i = 0; i < rows.length; i++) {
          rows[i] = i - 2;
        }
        int[] got = NativeKernels.hostFindChunk(prefix, rows);
        for (int i = 0; i < rows.length; i++) {
          int want = -1;
          for (int c = 0; c < n; c++) {
            if (prefix[c] <= rows[i] && rows[i] < prefix[c + 1]) {
              want = c;
            }
          }
          assertEquals(want, got[i], "row " + rows[i] + " prefix " + Arrays.toString(prefix));
        }
      }
    });
  }

  @Test
  void sortSmallSorts() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < 200; iter++) {
        int[] a = rnd.ints(rnd.nextInt(17), -5, 50).toArray();
        int[] want = a.clone();
        Arrays.sort(want);
        assertArrayEquals(want, NativeKernels.hostSortSmall(a));
      }
    });
  }

  /**
   * node_run_ends (where the home sum rounds a node partial) against a walk over the token's
   * destination ranks: partial k ends a run when it is the last partial or the next one's rank is
   * on another node. Random masks over 1..64 ranks and every divisor as ranks per node, plus the
   * empty mask, all ranks, one node and one rank per node.
   */
  @Test
  void nodeRunEndsMatchAWalkOverTheRanks() {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int iter = 0; iter < 2000; iter++) {
        int ranks = iter < 4 ? 64 : 1 + rnd.nextInt(64);
        int local = iter == 0 ? 64 : iter == 1 ? 1 : divisor(rnd, ranks);
        long all = ranks == 64 ? -1L : (1L << ranks) - 1;
        long mask = switch (iter % 5) {
          case 0 -> 0L;
          case 1 -> all;
          default -> rnd.nextLong() & rnd.nextLong() & all; // sparse
        };
        if (iter % 5 == 4) mask = rnd.nextLong() & all;
        long want = 0;
        int k = 0;
        int last = -1;
        for (int d = 0; d < ranks; d++) {
          if ((mask >>> d & 1) == 0) continue;
          if (last >= 0 && last / local != d / local) want |= 1L << (k - 1);
          last = d;
          k++;
        }
        if (k > 0) want |= 1L << (k - 1);
        assertEquals(want, NativeKernels.hostNodeRunEnds(mask, ranks, local),
            "mask " + Long.toBinaryString(mask) + ", ranks " + ranks + ", local " + local);
      }
      // one node: a single run, ending at the last partial
      assertEquals(1L << 3, NativeKernels.hostNodeRunEnds(0b1111L, 8, 8));
      // 2 x 2: ranks 0, 1, 3 -> runs {0, 1} and {3}
      assertEquals(0b110L, NativeKernels.hostNodeRunEnds(0b1011L, 4, 2));
    });
  }

  @Test
  void badHostArgumentsThrowNotCrash() {
    assertThrows(IllegalArgumentException.class,
        () -> NativeKernels.hostRecvRows(new int[3], 2, 2, new int[] {0, 0, 0}));
    assertThrows(IllegalArgumentException.class,
        () -> NativeKernels.hostLayout(new int[] {99}, 1, 1, 1, 2, 2, 128, new int[1], new int[1], new int[1],
            new int[2], new int[4], new int[3], new byte[2]));
    assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostNodeRunEnds(1L, 6, 4));
    assertThrows(IllegalArgumentException.class, () -> NativeKernels.hostNodeRunEnds(1L, 65, 1));
  }

  private static int divisor(SplittableRandom rnd, int n) {
    int[] ds = java.util.stream.IntStream.rangeClosed(1, n).filter(d -> n % d == 0).toArray();
    return ds[rnd.nextInt(ds.length)];
  }
}
