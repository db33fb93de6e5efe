package io.moeyard.cuda;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Numerics;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.MemorySegment;

/**
 * The obviously-correct model the bench checks every run against: per token, per k, where the
 * row goes (bucketed by slot in source-rank then token order, which is the receive layout by
 * definition); per token, the weighted sum. Nothing here shares code with the collectives
 * except the replica rule and the rounding primitives, which are specified on their own.
 */
final class OldBenchReference {
  private final ExpertMap map;
  private final int topk;
  /** {@code [rank][token * topk + k]}: row index on the destination rank, or -1. */
  private final int[][] destRow;
  private final int[][] destSlot;
  private final int[] rowsPerRank;

  OldBenchReference(ExpertMap map, int[][] topkIdx, int[] tokens, int topk) {
    this.map = map;
    this.topk = topk;
    int ranks = map.ranks();
    int slots = map.slots();
    int spr = map.slotsPerRank();
    int[] perSlot = new int[slots];
    destSlot = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      destSlot[r] = new int[tokens[r] * topk];
      for (int t = 0; t < tokens[r]; t++) {
        for (int k = 0; k < topk; k++) {
          int e = topkIdx[r][t * topk + k];
          int slot = e < 0 ? -1 : map.chooseSlot(r, t, e);
          destSlot[r][t * topk + k] = slot;
          if (slot >= 0) perSlot[slot]++;
        }
      }
    }
    int[] slotStart = new int[slots];
    rowsPerRank = new int[ranks];
    for (int d = 0; d < ranks; d++) {
      int at = 0;
      for (int e = 0; e < spr; e++) {
        slotStart[d * spr + e] = at;
        at += perSlot[d * spr + e];
      }
      rowsPerRank[d] = at;
    }
    destRow = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      destRow[r] = new int[tokens[r] * topk];
      for (int i = 0; i < destRow[r].length; i++) {
        int slot = destSlot[r][i];
        destRow[r][i] = slot < 0 ? -1 : slotStart[slot]++;
      }
    }
  }

  public int rowsReceivedBy(int rank) {
    return rowsPerRank[rank];
  }

  /** Null if {@code received} on {@code rank} holds exactly the expected rows, else the first difference. */
  public String checkDispatch(int rank, RowBuffer received, int receivedRows, RowBuffer[] x) {
    if (receivedRows != rowsPerRank[rank]) {
      return "rank " + rank + " received " + receivedRows + " rows, expected " + rowsPerRank[rank];
    }
    int spr = map.slotsPerRank();
    for (int r = 0; r < destRow.length; r++) {
      for (int i = 0; i < destRow[r].length; i++) {
        int slot = destSlot[r][i];
        if (slot < 0 || slot / spr != rank) continue;
        int row = destRow[r][i];
        int t = i / topk;
        long a = x[r].rowOffset(t);
        long b = received.rowOffset(row);
        if (MemorySegment.mismatch(x[r].segment(), a, a + x[r].rowBytes(), received.segment(), b, b + received.rowBytes()) != -1) {
          return "rank " + rank + " row " + row + " differs from rank " + r + " token " + t;
        }
      }
    }
    return null;
  }

  /** Null if {@code out} of {@code rank} is the weighted sum, bit for bit, else the first difference. */
  public String checkCombine(int rank, float[] weights, RowBuffer[] expertOut, RowBuffer out) {
    DType dt = out.dtype();
    int h = out.hidden();
    int tokens = out.rows();
    int spr = map.slotsPerRank();
    int[] order = new int[topk];
    for (int t = 0; t < tokens; t++) {
      // the token's selections by ascending slot (hence by rank, then local slot)
      int n = 0;
      for (int k = 0; k < topk; k++) if (destSlot[rank][t * topk + k] >= 0) order[n++] = k;
      for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && destSlot[rank][t * topk + order[j - 1]] > destSlot[rank][t * topk + order[j]]; j--) {
          int tmp = order[j]; order[j] = order[j - 1]; order[j - 1] = tmp;
        }
      }
      for (int c = 0; c < h; c++) {
        float acc = 0f;
        int i = 0;
        while (i < n) {
          int d = destSlot[rank][t * topk + order[i]] / spr;
          float p = 0f;
          for (; i < n && destSlot[rank][t * topk + order[i]] / spr == d; i++) {
            int sel = t * topk + order[i];
            float prod = weights[sel] * expertOut[d].getFloat(destRow[rank][sel], c);
            p = p + prod;
          }
          acc = acc + round(dt, p);
        }
        float want = n == 0 ? 0f : round(dt, acc);
        float got = out.getFloat(t, c);
        if (Float.floatToIntBits(want) != Float.floatToIntBits(got)) {
          return "rank " + rank + " token " + t + " channel " + c + ": expected " + want + ", got " + got;
        }
      }
    }
    return null;
  }

  private static float round(DType dt, float v) {
    return switch (dt) {
      case BF16 -> Numerics.bf16ToFloat(Numerics.floatToBf16(v));
      case FP16 -> Numerics.fp16ToFloat(Numerics.floatToFp16(v));
      default -> v;
    };
  }
}
