package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The unfused baseline's blocks between machines ({@link UnfusedPath#blocks}) on random counts and
 * random machines, without a GPU: for every pair of ranks on different machines the bytes one
 * sends are exactly the rows it routes to the other (summed from the counts, not from the
 * prefixes the code uses) and exactly what the other receives from it, in the dispatch and back
 * in the combine; nothing is exchanged within a machine; every block lies inside its buffer and
 * no two blocks of one rank overlap.
 */
class UnfusedBlocksHostTest {
  private static final long SEND_BASE = 0x10000000L;
  private static final long RECV_BASE = 0x70000000L;

  @Test
  void blocksPairUpAcrossMachinesOnRandomCounts() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int c = 0; c < 300; c++) {
        int nR = 2 + rnd.nextInt(7);
        int nS = 1 + rnd.nextInt(3);
        int[][] totals = new int[nR][nR * nS + nR]; // selections per slot, then token-rank pairs per rank (unused here)
        boolean empty = rnd.nextInt(5) == 0; // a world that routes nothing
        for (int q = 0; q < nR; q++) {
          for (int s = 0; s < nR * nS; s++) totals[q][s] = empty || rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(40);
          for (int d = 0; d < nR; d++) {
            int rows = 0;
            for (int s = 0; s < nS; s++) rows += totals[q][d * nS + s];
            totals[q][nR * nS + d] = rows == 0 ? 0 : 1 + rnd.nextInt(rows);
          }
        }
        int[] tokens = new int[nR];
        WorldCounts wc = new WorldCounts(tokens, totals, nS);
        int machines = 2 + rnd.nextInt(nR - 1);
        int[] machine = new int[nR];
        for (int q = 0; q < nR; q++) machine[q] = q * machines / nR;
        long rb = 1 + rnd.nextInt(64);
        String ctx = "case " + c + ": " + nR + " ranks, " + nS + " slots, " + machines + " machines, row " + rb;
        long[][][] dispatch = new long[nR][][];
        long[][][] combine = new long[nR][][];
        for (int r = 0; r < nR; r++) {
          boolean[] reach = new boolean[nR];
          for (int q = 0; q < nR; q++) reach[q] = machine[q] == machine[r];
          dispatch[r] = UnfusedPath.farArgs(nR);
          UnfusedPath.blocks(reach, wc.slotPrefix(r), wc.stagingPrefix(r), nS, SEND_BASE, RECV_BASE, rb, dispatch[r]);
          combine[r] = UnfusedPath.farArgs(nR);
          UnfusedPath.blocks(reach, wc.stagingPrefix(r), wc.slotPrefix(r), nS, SEND_BASE, RECV_BASE, rb, combine[r]);
          long sent = wc.slotPrefix(r)[nR * nS] * rb;
          long received = (long) wc.rows[r] * rb;
          within(dispatch[r], sent, received, ctx + ", dispatch of rank " + r);
          within(combine[r], received, sent, ctx + ", combine of rank " + r);
        }
        for (int r = 0; r < nR; r++) {
          for (int q = 0; q < nR; q++) {
            long routed = 0; // rows r routes to q
            for (int s = 0; s < nS; s++) routed += totals[r][q * nS + s];
            String pair = ctx + ", ranks " + r + " -> " + q;
            if (machine[q] == machine[r]) {
              for (int k = 0; k < 4; k++) assertEquals(0, dispatch[r][k][q], pair + ": nothing within a machine");
              continue;
            }
            assertEquals(routed * rb, dispatch[r][1][q], pair + ": dispatch send");
            assertEquals(routed * rb, dispatch[q][3][r], pair + ": dispatch receive");
            assertEquals(routed * rb, combine[q][1][r], pair + ": combine send back");
            assertEquals(routed * rb, combine[r][3][q], pair + ": combine receive");
          }
        }
      }
    });
  }

  /** Every non-empty block of one side inside [base, base + bytes), no two overlapping; empty ones at address 0. */
  private static void within(long[][] args, long sendBytes, long recvBytes, String ctx) {
    side(args[0], args[1], SEND_BASE, sendBytes, ctx + " (send)");
    side(args[2], args[3], RECV_BASE, recvBytes, ctx + " (receive)");
  }

  private static void side(long[] address, long[] bytes, long base, long limit, String ctx) {
    for (int q = 0; q < address.length; q++) {
      if (bytes[q] == 0) {
        assertEquals(0, address[q], ctx + ": an empty block has no address, peer " + q);
        continue;
      }
      assertTrue(address[q] >= base && address[q] + bytes[q] <= base + limit, ctx + ": block of peer " + q + " outside the buffer");
      for (int p = 0; p < q; p++) {
        if (bytes[p] == 0) continue;
        assertTrue(address[p] + bytes[p] <= address[q] || address[q] + bytes[q] <= address[p],
            ctx + ": blocks of peers " + p + " and " + q + " overlap");
      }
    }
  }
}
