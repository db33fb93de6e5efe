package io.moeyard.cuda;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Numerics;
import java.util.ArrayList;
import java.util.List;

/**
 * The obviously correct model the collectives are checked against: plain loops over every
 * (rank, token, k), no offsets arithmetic, no dedup, no chunking.
 */
final class OldCombineReference {
  /** One expected received row: where it came from. */
  record Row(int srcRank, int token, int k, int localSlot) {}

  private OldCombineReference() {}

  /** Per destination rank, the rows it must receive, in receive order (slot, source rank, token). */
  static List<List<Row>> dispatch(ExpertMap map, int[][] topkIdx, int[] tokens, int topk) {
    int ranks = map.ranks();
    int spr = map.slotsPerRank();
    List<List<Row>> out = new ArrayList<>();
    for (int d = 0; d < ranks; d++) {
      List<Row> rows = new ArrayList<>();
      for (int e = 0; e < spr; e++) {
        int slot = d * spr + e;
        for (int r = 0; r < ranks; r++) {
          for (int t = 0; t < tokens[r]; t++) {
            for (int k = 0; k < topk; k++) {
              int ex = topkIdx[r][t * topk + k];
              if (ex >= 0 && map.chooseSlot(r, t, ex) == slot) rows.add(new Row(r, t, k, e));
            }
          }
        }
      }
      out.add(rows);
    }
    return out;
  }

  static float read(DType dt, byte[] bytes, int row, int hidden, int c) {
    int at = (row * hidden + c) * dt.bytes();
    return switch (dt) {
      case BF16 -> Numerics.bf16ToFloat(le16(bytes, at));
      case FP16 -> Numerics.fp16ToFloat(le16(bytes, at));
      case FP32 -> Float.intBitsToFloat((bytes[at] & 0xFF) | (bytes[at + 1] & 0xFF) << 8 | (bytes[at + 2] & 0xFF) << 16 | (bytes[at + 3] & 0xFF) << 24);
      case FP8_E4M3 -> throw new IllegalArgumentException();
    };
  }

  private static short le16(byte[] b, int at) {
    return (short) ((b[at] & 0xFF) | (b[at + 1] & 0xFF) << 8);
  }

  static float roundTrip(DType dt, float v) {
    return switch (dt) {
      case BF16 -> Numerics.bf16ToFloat(Numerics.floatToBf16(v));
      case FP16 -> Numerics.fp16ToFloat(Numerics.floatToFp16(v));
      case FP32 -> v;
      case FP8_E4M3 -> throw new IllegalArgumentException();
    };
  }

  /**
   * Expected combine output of rank r: for each token, per expert rank (ascending), the sum over
   * its selections there (ascending slot) of weight x expert output, rounded to dt; then the sum
   * of those partials, rounded. {@code expertOut[d]} holds rank d's expert outputs in receive order.
   */
  static float[][] combine(
      ExpertMap map, List<List<Row>> received, byte[][] expertOut, DType dt, int hidden,
      int r, int tokens, int topk, int[] idx, float[] w) {
    int spr = map.slotsPerRank();
    // where each (token, k) of rank r landed
    int[] destRank = new int[tokens * topk];
    int[] destRow = new int[tokens * topk];
    int[] destSlot = new int[tokens * topk];
    java.util.Arrays.fill(destRank, -1);
    for (int d = 0; d < received.size(); d++) {
      List<Row> rows = received.get(d);
      for (int i = 0; i < rows.size(); i++) {
        Row row = rows.get(i);
        if (row.srcRank() == r) {
          destRank[row.token() * topk + row.k()] = d;
          destRow[row.token() * topk + row.k()] = i;
          destSlot[row.token() * topk + row.k()] = row.localSlot();
        }
      }
    }
    float[][] out = new float[tokens][hidden];
    for (int t = 0; t < tokens; t++) {
      for (int c = 0; c < hidden; c++) {
        float acc = 0f;
        for (int d = 0; d < map.ranks(); d++) {
          boolean any = false;
          float p = 0f;
          for (int e = 0; e < spr; e++) {
            for (int k = 0; k < topk; k++) {
              int i = t * topk + k;
              if (idx[i] >= 0 && destRank[i] == d && destSlot[i] == e) {
                any = true;
                float y = read(dt, expertOut[d], destRow[i], hidden, c);
                float prod = w[i] * y;
                p = p + prod;
              }
            }
          }
          if (any) acc = acc + roundTrip(dt, p);
        }
        out[t][c] = roundTrip(dt, acc);
      }
    }
    return out;
  }
}
