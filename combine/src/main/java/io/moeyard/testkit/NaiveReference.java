package io.moeyard.testkit;

import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The data-path contract (shuffle-engine/docs/data-path.md) written as plain loops, for checking
 * every backend against: which slot each selection uses, where its row lands, what every rank
 * receives and what combine returns, bit for bit. It shares no code with the collectives: the
 * replica rule is read off the map slot by slot, the receive layout is built by appending rows to
 * per-slot lists, and the rounding to BF16 is written out here.
 *
 * <p>Built once per routing ({@code topkIdx[rank][token * topk + k]}, -1 = not routed); the
 * payload methods then take the rows ({@link RowBuffer}s, heap or off-heap) of any workload with
 * that routing.
 */
public final class NaiveReference {
  private final ExpertMap map;
  private final int topk;
  private final int[] tokens;
  /** {@code [rank][token * topk + k]}: the physical slot the selection uses, or -1. */
  private final int[][] slot;
  /** {@code [rank][token * topk + k]}: the selection's row on the slot's rank, or -1. */
  private final int[][] row;
  /** {@code [rank][row]}: the source rank, token and k of each received row. */
  private final int[][] sourceRank;
  private final int[][] sourceToken;
  private final int[][] sourceK;
  private final int[][] slotCounts;

  /**
   * @param topkIdx per rank, {@code tokens[rank] * topk} expert ids (-1 = not routed), distinct
   *     within a token
   */
  public NaiveReference(ExpertMap map, int[][] topkIdx, int[] tokens, int topk) {
    this.map = map;
    this.topk = topk;
    this.tokens = tokens.clone();
    int ranks = map.ranks();
    int slots = map.slots();
    int spr = map.slotsPerRank();
    int[][] slotsOfExpert = slotsOfExpert(map);
    // every selection, in (source rank, token, k) order, appended to its slot's list
    List<List<int[]>> bySlot = new ArrayList<>();
    for (int p = 0; p < slots; p++) bySlot.add(new ArrayList<>());
    slot = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      slot[r] = new int[tokens[r] * topk];
      for (int t = 0; t < tokens[r]; t++) {
        for (int k = 0; k < topk; k++) {
          int e = topkIdx[r][t * topk + k];
          if (e < -1 || e >= map.experts()) {
            throw new IllegalArgumentException("rank " + r + " token " + t + " k " + k + ": expert " + e + " is outside [-1, " + map.experts() + ")");
          }
          int p = e < 0 ? -1 : chooseSlot(slotsOfExpert[e], spr, map.topology().localRanks(), r, t);
          slot[r][t * topk + k] = p;
          if (p >= 0) bySlot.get(p).add(new int[] {r, t, k});
        }
      }
    }
    // rank d receives its slots' lists one after the other, local slot 0 first
    row = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      row[r] = new int[tokens[r] * topk];
      Arrays.fill(row[r], -1);
    }
    sourceRank = new int[ranks][];
    sourceToken = new int[ranks][];
    sourceK = new int[ranks][];
    slotCounts = new int[ranks][spr];
    for (int d = 0; d < ranks; d++) {
      int n = 0;
      for (int ls = 0; ls < spr; ls++) n += bySlot.get(d * spr + ls).size();
      sourceRank[d] = new int[n];
      sourceToken[d] = new int[n];
      sourceK[d] = new int[n];
      int i = 0;
      for (int ls = 0; ls < spr; ls++) {
        List<int[]> rows = bySlot.get(d * spr + ls);
        slotCounts[d][ls] = rows.size();
        for (int[] sel : rows) {
          sourceRank[d][i] = sel[0];
          sourceToken[d][i] = sel[1];
          sourceK[d][i] = sel[2];
          row[sel[0]][sel[1] * topk + sel[2]] = i;
          i++;
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The replica rule

  /**
   * The slot that token {@code token} of rank {@code rank} uses for expert {@code expert}, by the
   * words of the contract: the expert's slots on the rank, else on its node, else all of them, in
   * ascending order; the token takes candidate {@code (rank + token) % count}.
   */
  public static int chooseSlot(ExpertMap map, int rank, int token, int expert) {
    return chooseSlot(slotsOfExpert(map)[expert], map.slotsPerRank(), map.topology().localRanks(), rank, token);
  }

  private static int chooseSlot(int[] slotsOfExpert, int slotsPerRank, int localRanks, int rank, int token) {
    List<Integer> onRank = new ArrayList<>();
    List<Integer> onNode = new ArrayList<>();
    List<Integer> all = new ArrayList<>();
    for (int p : slotsOfExpert) {
      int owner = p / slotsPerRank;
      if (owner == rank) onRank.add(p);
      if (owner / localRanks == rank / localRanks) onNode.add(p);
      all.add(p);
    }
    List<Integer> candidates = !onRank.isEmpty() ? onRank : !onNode.isEmpty() ? onNode : all;
    return candidates.get((int) (((long) rank + token) % candidates.size()));
  }

  /** Per expert, its slots ascending, read off the map slot by slot. */
  private static int[][] slotsOfExpert(ExpertMap map) {
    List<List<Integer>> lists = new ArrayList<>();
    for (int e = 0; e < map.experts(); e++) lists.add(new ArrayList<>());
    for (int p = 0; p < map.slots(); p++) lists.get(map.expertOfSlot(p)).add(p);
    int[][] out = new int[map.experts()][];
    for (int e = 0; e < out.length; e++) out[e] = lists.get(e).stream().mapToInt(Integer::intValue).toArray();
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // The receive layout

  public int topk() {
    return topk;
  }

  /** The physical slot selection {@code (token, k)} of {@code rank} uses, or -1 if not routed. */
  public int slot(int rank, int token, int k) {
    return slot[rank][token * topk + k];
  }

  /** The row that selection {@code (token, k)} of {@code rank} lands in on its slot's rank, or -1. */
  public int row(int rank, int token, int k) {
    return row[rank][token * topk + k];
  }

  public int rowsReceivedBy(int rank) {
    return sourceRank[rank].length;
  }

  /** Rows {@code rank} receives for each of its local slots. */
  public int[] slotCounts(int rank) {
    return slotCounts[rank].clone();
  }

  public int sourceRank(int rank, int row) {
    return sourceRank[rank][row];
  }

  public int sourceToken(int rank, int row) {
    return sourceToken[rank][row];
  }

  /** Which of its token's top-k entries received row {@code row} of {@code rank} is. */
  public int sourceK(int rank, int row) {
    return sourceK[rank][row];
  }

  /** The ranks token {@code token} of {@code rank} is sent to (its token-rank pairs), ascending. */
  public int[] destinations(int rank, int token) {
    boolean[] to = new boolean[map.ranks()];
    for (int k = 0; k < topk; k++) {
      int p = slot(rank, token, k);
      if (p >= 0) to[p / map.slotsPerRank()] = true;
    }
    int n = 0;
    for (boolean b : to) if (b) n++;
    int[] out = new int[n];
    n = 0;
    for (int d = 0; d < to.length; d++) if (to[d]) out[n++] = d;
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Dispatch

  /** The rows (and FP8 scales) {@code rank} receives: each a copy of its source token's row. */
  public RowBuffer received(int rank, RowBuffer[] x) {
    RowBuffer any = x[0];
    int n = rowsReceivedBy(rank);
    byte[] rows = new byte[Math.toIntExact(n * any.rowBytes())];
    float[] scales = new float[n * any.scalesPerRow()];
    for (int i = 0; i < n; i++) {
      RowBuffer src = x[sourceRank[rank][i]];
      int t = sourceToken[rank][i];
      MemorySegment.copy(src.segment(), src.rowOffset(t), MemorySegment.ofArray(rows), i * any.rowBytes(), any.rowBytes());
      for (int j = 0; j < any.scalesPerRow(); j++) {
        scales[i * any.scalesPerRow() + j] = src.scales().getAtIndex(ValueLayout.JAVA_FLOAT, (long) t * any.scalesPerRow() + j);
      }
    }
    return new RowBuffer(MemorySegment.ofArray(rows), 0, n, any.hidden(), any.dtype(),
        any.dtype().hasScales() ? MemorySegment.ofArray(scales) : null);
  }

  /** The weight each received row of {@code rank} carries: its selection's. */
  public float[] receivedWeights(int rank, float[][] topkWeights) {
    float[] w = new float[rowsReceivedBy(rank)];
    for (int i = 0; i < w.length; i++) {
      w[i] = topkWeights[sourceRank[rank][i]][sourceToken[rank][i] * topk + sourceK[rank][i]];
    }
    return w;
  }

  /**
   * Null when {@code received} holds exactly the rows (and FP8 scales) {@code rank} must receive,
   * in order; else the first difference.
   */
  public String checkDispatch(int rank, RowBuffer received, int receivedRows, RowBuffer[] x) {
    if (receivedRows != rowsReceivedBy(rank)) {
      return "rank " + rank + " received " + receivedRows + " rows, expected " + rowsReceivedBy(rank);
    }
    for (int i = 0; i < receivedRows; i++) {
      RowBuffer src = x[sourceRank[rank][i]];
      int t = sourceToken[rank][i];
      long a = src.rowOffset(t);
      long b = received.rowOffset(i);
      if (MemorySegment.mismatch(src.segment(), a, a + src.rowBytes(), received.segment(), b, b + received.rowBytes()) != -1) {
        return "rank " + rank + " row " + i + " differs from rank " + sourceRank[rank][i] + " token " + t;
      }
      int spr = src.scalesPerRow();
      for (int j = 0; j < spr; j++) {
        float want = src.scales().getAtIndex(ValueLayout.JAVA_FLOAT, (long) t * spr + j);
        float got = received.scales().getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * spr + j);
        if (Float.floatToRawIntBits(want) != Float.floatToRawIntBits(got)) {
          return "rank " + rank + " row " + i + " scale " + j + " is " + got + ", rank " + sourceRank[rank][i] + " token " + t + " has " + want;
        }
      }
    }
    return null;
  }

  // ---------------------------------------------------------------------------------------------
  // Combine

  /**
   * What combine returns on {@code rank}: {@code tokens x hidden} rows of {@code outType}.
   * {@code expertOut[d]} holds rank d's expert outputs in its receive order.
   */
  public RowBuffer combined(int rank, float[] topkWeights, RowBuffer[] expertOut, DType outType) {
    int hidden = expertOut[0].hidden();
    byte[] bytes = new byte[Math.toIntExact((long) tokens[rank] * hidden * outType.bytes())];
    RowBuffer out = new RowBuffer(MemorySegment.ofArray(bytes), 0, tokens[rank], hidden, outType, null);
    float[] value = new float[hidden];
    for (int t = 0; t < tokens[rank]; t++) {
      combineToken(rank, t, topkWeights, expertOut, outType, value);
      for (int c = 0; c < hidden; c++) store(out, t, c, value[c]);
    }
    return out;
  }

  /** Null when {@code out} is what combine returns on {@code rank}, bit for bit; else the first difference. */
  public String checkCombine(int rank, float[] topkWeights, RowBuffer[] expertOut, RowBuffer out) {
    float[] value = new float[out.hidden()];
    for (int t = 0; t < tokens[rank]; t++) {
      combineToken(rank, t, topkWeights, expertOut, out.dtype(), value);
      for (int c = 0; c < out.hidden(); c++) {
        float got = out.getFloat(t, c);
        if (Float.floatToRawIntBits(value[c]) != Float.floatToRawIntBits(got)) {
          return "rank " + rank + " token " + t + " channel " + c + ": expected " + value[c] + ", got " + got;
        }
      }
    }
    return null;
  }

  /**
   * One token's output: per destination rank ascending, over its rows there in ascending slot
   * order, {@code acc = acc + w * y} in float (each step rounded, no fused multiply-add), the
   * partial rounded to the output type. On one node the partials are summed in float and rounded
   * once. On several nodes, per node ascending, its ranks' partials are summed in float and
   * rounded once (the node partial), and the node partials summed in float and rounded once.
   * Every sum starts from 0. A token routed nowhere gets zeros.
   */
  private void combineToken(int rank, int t, float[] w, RowBuffer[] y, DType outType, float[] value) {
    int spr = map.slotsPerRank();
    // the token's rows in the order they are summed: by slot, which is by rank, then local slot
    int[] dest = new int[topk];
    int[] rowAt = new int[topk];
    float[] weight = new float[topk];
    int n = 0;
    for (int p = 0; p < map.slots(); p++) {
      for (int k = 0; k < topk; k++) {
        if (slot(rank, t, k) == p) {
          dest[n] = p / spr;
          rowAt[n] = row(rank, t, k);
          weight[n] = w[t * topk + k];
          n++;
        }
      }
    }
    int localRanks = map.topology().localRanks();
    boolean nodes = map.topology().nodes() > 1;
    for (int c = 0; c < value.length; c++) {
      float total = 0f;
      int i = 0;
      while (i < n) {
        int node = dest[i] / localRanks;
        float nodeSum = 0f;
        while (i < n && dest[i] / localRanks == node) {
          int d = dest[i];
          float acc = 0f;
          for (; i < n && dest[i] == d; i++) {
            float product = weight[i] * y[d].getFloat(rowAt[i], c);
            acc = acc + product;
          }
          nodeSum = nodeSum + round(acc, outType);
        }
        total = total + (nodes ? round(nodeSum, outType) : nodeSum);
      }
      value[c] = round(total, outType);
    }
  }

  /** Round to nearest even; NaN stays a (quiet) NaN. */
  static float round(float v, DType dt) {
    return switch (dt) {
      case BF16 -> Float.intBitsToFloat((toBf16(v) & 0xFFFF) << 16);
      case FP16 -> Float.float16ToFloat(Float.floatToFloat16(v));
      case FP32 -> v;
      case FP8_E4M3 -> throw new IllegalArgumentException("combine never rounds into fp8");
    };
  }

  private static short toBf16(float v) {
    int bits = Float.floatToRawIntBits(v);
    if (Float.isNaN(v)) return (short) ((bits >>> 16) | 0x40);
    int lsb = (bits >>> 16) & 1;
    return (short) ((bits + 0x7FFF + lsb) >>> 16);
  }

  private static void store(RowBuffer out, int t, int c, float v) {
    long at = out.rowOffset(t) + (long) c * out.dtype().bytes();
    switch (out.dtype()) {
      case BF16 -> out.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, at, toBf16(v));
      case FP16 -> out.segment().set(ValueLayout.JAVA_SHORT_UNALIGNED, at, Float.floatToFloat16(v));
      case FP32 -> out.segment().set(ValueLayout.JAVA_FLOAT_UNALIGNED, at, v);
      case FP8_E4M3 -> throw new IllegalArgumentException("combine never writes fp8");
    }
  }
}
