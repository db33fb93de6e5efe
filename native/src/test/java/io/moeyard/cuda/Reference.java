package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * A naive Java implementation of the layout and arithmetic contract (shuffle-engine/docs/data-path.md),
 * written straight from the words of the contract, independent of the native code: brute-force
 * enumeration instead of prefix formulas, plain loops instead of chunks.
 */
final class Reference {

  private Reference() {}

  /** One randomly drawn problem: a config plus every rank's input. */
  record Problem(
      KernelShape cfg, int[] tokens, int[][] topkIdx, float[][] topkW, byte[][] x,
      float[][] scales) {

    int ranks() {
      return cfg.ranks();
    }

    CudaWorld open() {
      return CudaWorld.open(cfg.map(), cfg.comm());
    }

    /** Rank r's rows as a heap-backed row buffer over {@code x[r]} (and its scales). */
    io.moeyard.engine.RowBuffer x(int r) {
      java.lang.foreign.MemorySegment sc = cfg.scaleCols() > 0 ? java.lang.foreign.MemorySegment.ofArray(scales[r]) : null;
      return new io.moeyard.engine.RowBuffer(java.lang.foreign.MemorySegment.ofArray(x[r]), 0, tokens[r], cfg.hidden(),
          cfg.dispatchType(), sc);
    }

    io.moeyard.dispatch.Routing routing(int r) {
      return new io.moeyard.dispatch.Routing(tokens[r], cfg.topk(), topkIdx[r], topkW[r]);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Shapes
  // ---------------------------------------------------------------------------------------------

  /** Per logical expert, its slots ascending. */
  static int[][] expertSlots(KernelShape c) {
    int[][] s = new int[c.experts()][];
    for (int e = 0; e < s.length; e++) {
      s[e] = c.map().slotsOf(e).clone();
    }
    return s;
  }

  /** Most tokens per rank of the shapes built by {@link #trivial}. */
  static final int TRIVIAL_MAX_TOKENS = 1024;

  /** The combine dtype that goes with a dispatch dtype (FP8 combines in BF16). */
  static DType combineOf(DType dispatch) {
    return dispatch == DType.FP8_E4M3 ? DType.BF16 : dispatch;
  }

  /** The shape of {@code expertSlots} (every slot used) on {@code ranks / localRanks} nodes. */
  static KernelShape shape(
      int ranks, int localRanks, int slotsPerRank, int[][] expertSlots, int hidden, int topk, DType dtype,
      int maxTokens) {
    int[] p2l = new int[ranks * slotsPerRank];
    java.util.Arrays.fill(p2l, -1);
    for (int e = 0; e < expertSlots.length; e++) {
      for (int p : expertSlots[e]) p2l[p] = e;
    }
    ExpertMap map = ExpertMap.of(new Topology(ranks / localRanks, localRanks), expertSlots.length, p2l);
    return KernelShape.of(map, CommConfig.of(maxTokens, hidden, topk, dtype, combineOf(dtype)));
  }

  /** The trivial map (slot p = expert p), at most {@link #TRIVIAL_MAX_TOKENS} tokens per rank. */
  static KernelShape trivial(int ranks, int localRanks, int slotsPerRank, int hidden, int topk, DType dtype) {
    ExpertMap map = ExpertMap.trivial(new Topology(ranks / localRanks, localRanks), ranks * slotsPerRank);
    return KernelShape.of(map, CommConfig.of(TRIVIAL_MAX_TOKENS, hidden, topk, dtype, combineOf(dtype)));
  }

  // ---------------------------------------------------------------------------------------------
  // Random problems
  // ---------------------------------------------------------------------------------------------

  /** A random expert map: every expert has >= 1 slot; extra slots are replicas. */
  static int[][] randomMap(Random rnd, int slots, int experts) {
    List<List<Integer>> m = new ArrayList<>();
    for (int e = 0; e < experts; e++) {
      m.add(new ArrayList<>());
    }
    int[] perm = rnd.ints(0, Integer.MAX_VALUE).limit(slots).toArray();
    Integer[] order = new Integer[slots];
    for (int i = 0; i < slots; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (a, b) -> Integer.compare(perm[a], perm[b]));
    for (int i = 0; i < slots; i++) {
      int p = order[i];
      if (i < experts) {
        m.get(i).add(p);
      } else {
        m.get(rnd.nextInt(experts)).add(p); // replica (an ExpertMap has no unused slot)
      }
    }
    int[][] out = new int[experts][];
    for (int e = 0; e < experts; e++) {
      out[e] = m.get(e).stream().mapToInt(Integer::intValue).sorted().toArray();
    }
    return out;
  }

  /** Random routing: distinct logical experts per token, some -1 entries with probability pNone. */
  static int[] randomTopk(Random rnd, int tokens, int k, int experts, double pNone) {
    int[] idx = new int[tokens * k];
    for (int t = 0; t < tokens; t++) {
      int[] perm = rnd.ints(0, experts).distinct().limit(Math.min(k, experts)).toArray();
      for (int j = 0; j < k; j++) {
        idx[t * k + j] = (j < perm.length && rnd.nextDouble() >= pNone) ? perm[j] : -1;
      }
    }
    return idx;
  }

  /** Routing given as a function: expert of choice {@code j} of token {@code t} on rank {@code r} (-1 = none). */
  interface Route {
    int expert(int rank, int token, int j);
  }

  /** A problem with the given routing and random weights, rows and (FP8) scales. */
  static Problem routed(KernelShape cfg, int[] tokens, Route route, Random rnd) {
    int ranks = cfg.ranks();
    int k = cfg.topk();
    int[][] idx = new int[ranks][];
    float[][] w = new float[ranks][];
    byte[][] x = new byte[ranks][];
    float[][] sc = new float[ranks][];
    for (int r = 0; r < ranks; r++) {
      idx[r] = new int[tokens[r] * k];
      for (int t = 0; t < tokens[r]; t++) {
        for (int j = 0; j < k; j++) idx[r][t * k + j] = route.expert(r, t, j);
      }
      w[r] = randomWeights(rnd, tokens[r] * k);
      x[r] = randomRows(rnd, (long) tokens[r] * cfg.hidden(), cfg.dispatchType());
      if (cfg.scaleCols() > 0) sc[r] = randomWeights(rnd, tokens[r] * cfg.scaleCols());
    }
    return new Problem(cfg, tokens, idx, w, x, sc);
  }

  static float[] randomWeights(Random rnd, int n) {
    float[] w = new float[n];
    for (int i = 0; i < n; i++) {
      w[i] = rnd.nextFloat() * 2f - 0.5f;
    }
    return w;
  }

  /** Random values in [-2, 2) as raw little-endian bytes of the dtype (never all zeros). */
  static byte[] randomRows(Random rnd, long elems, DType dt) {
    float[] f = new float[Math.toIntExact(elems)];
    for (int i = 0; i < f.length; i++) {
      f[i] = rnd.nextFloat() * 4f - 2f;
    }
    if (dt == DType.FP8_E4M3) {
      byte[] b = new byte[f.length];
      rnd.nextBytes(b); // dispatch only copies FP8 bytes
      return b;
    }
    return encode(f, dt);
  }

  static Problem randomProblem(
      Random rnd, int ranks, int localRanks, int slotsPerRank, int experts, int topk, int hidden,
      DType dtype, int maxTokens, double pNone) {
    int[][] map = randomMap(rnd, ranks * slotsPerRank, experts);
    var cfg = shape(ranks, localRanks, slotsPerRank, map, hidden, topk, dtype, maxTokens);
    int[] tokens = new int[ranks];
    int[][] idx = new int[ranks][];
    float[][] w = new float[ranks][];
    byte[][] x = new byte[ranks][];
    float[][] sc = new float[ranks][];
    for (int r = 0; r < ranks; r++) {
      tokens[r] = maxTokens == 0 ? 0 : rnd.nextInt(maxTokens + 1);
      idx[r] = randomTopk(rnd, tokens[r], topk, experts, pNone);
      w[r] = randomWeights(rnd, tokens[r] * topk);
      x[r] = randomRows(rnd, (long) tokens[r] * hidden, dtype);
      if (dtype == DType.FP8_E4M3) {
        sc[r] = randomWeights(rnd, tokens[r] * (hidden / 128));
      }
    }
    return new Problem(cfg, tokens, idx, w, x, sc);
  }

  // ---------------------------------------------------------------------------------------------
  // Layout
  // ---------------------------------------------------------------------------------------------

  /** Replica choice, from the words of the contract. */
  static int chooseReplica(int[][] map, int slotsPerRank, int localRanks, int r, int t, int e) {
    int[] all = map[e];
    int[] cand = Arrays.stream(all).filter(p -> p / slotsPerRank == r).toArray();
    if (cand.length == 0) {
      cand =
          Arrays.stream(all)
              .filter(p -> (p / slotsPerRank) / localRanks == r / localRanks)
              .toArray();
    }
    if (cand.length == 0) {
      cand = all;
    }
    return cand[(r + t) % cand.length];
  }

  static int[] slotIds(KernelShape c, int r, int[] topkIdx) {
    int k = c.topk();
    int[] out = new int[topkIdx.length];
    for (int i = 0; i < topkIdx.length; i++) {
      out[i] =
          topkIdx[i] < 0
              ? -1
              : chooseReplica(expertSlots(c), c.slotsPerRank(), c.localRanks(), r, i / k,
                  topkIdx[i]);
    }
    return out;
  }

  static boolean selects(int[] slotIds, int k, int t, int p) {
    for (int j = 0; j < k; j++) {
      if (slotIds[t * k + j] == p) {
        return true;
      }
    }
    return false;
  }

  /** Sorted distinct destination ranks of token t. */
  static int[] destRanks(int[] slotIds, int k, int s, int t) {
    return Arrays.stream(slotIds, t * k, t * k + k).filter(p -> p >= 0).map(p -> p / s).distinct()
        .sorted().toArray();
  }

  /**
   * Receive rows by brute-force enumeration: on each destination d, walk slots ascending, source
   * ranks ascending, tokens ascending, and hand out rows one by one. rows[r][t*K+k] = row on
   * destination (slot / S), or -1.
   */
  static int[][] recvRows(int ranks, int slotsPerRank, int k, int[] tokens, int[][] slotIds) {
    int[][] rows = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      rows[r] = new int[tokens[r] * k];
      Arrays.fill(rows[r], -1);
    }
    for (int d = 0; d < ranks; d++) {
      int next = 0;
      for (int ls = 0; ls < slotsPerRank; ls++) {
        int p = d * slotsPerRank + ls;
        for (int r = 0; r < ranks; r++) {
          for (int t = 0; t < tokens[r]; t++) {
            for (int j = 0; j < k; j++) {
              if (slotIds[r][t * k + j] == p) {
                rows[r][t * k + j] = next++;
              }
            }
          }
        }
      }
    }
    return rows;
  }

  /** N[r][d*S + ls]. */
  static int[][] counts(int ranks, int slots, int[] tokens, int[][] slotIds) {
    int[][] n = new int[ranks][slots];
    for (int r = 0; r < ranks; r++) {
      for (int p : slotIds[r]) {
        if (p >= 0) {
          n[r][p]++;
        }
      }
    }
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // Dispatch and combine
  // ---------------------------------------------------------------------------------------------

  record DispatchOut(
      int rows, byte[] recvX, float[] recvScales, float[] recvW, int[] slotCounts, int[] pairSrc,
      int[] pairToken) {}

  static DispatchOut[] dispatch(Problem pb) {
    var c = pb.cfg();
    int nR = c.ranks();
    int s = c.slotsPerRank();
    int k = c.topk();
    int rb = c.rowBytes();
    int sc = c.scaleCols();
    int[][] ids = new int[nR][];
    for (int r = 0; r < nR; r++) {
      ids[r] = slotIds(c, r, pb.topkIdx()[r]);
    }
    int[][] rows = recvRows(nR, s, k, pb.tokens(), ids);
    int[] total = new int[nR];
    int[][] slotCounts = new int[nR][s];
    for (int r = 0; r < nR; r++) {
      for (int p : ids[r]) {
        if (p >= 0) {
          total[p / s]++;
          slotCounts[p / s][p % s]++;
        }
      }
    }
    DispatchOut[] out = new DispatchOut[nR];
    for (int d = 0; d < nR; d++) {
      byte[] x = new byte[total[d] * rb];
      float[] scales = new float[total[d] * sc];
      float[] w = new float[total[d]];
      List<int[]> pairs = new ArrayList<>();
      for (int r = 0; r < nR; r++) {
        for (int t = 0; t < pb.tokens()[r]; t++) {
          boolean toD = false;
          for (int j = 0; j < k; j++) {
            int p = ids[r][t * k + j];
            if (p < 0 || p / s != d) {
              continue;
            }
            toD = true;
            int row = rows[r][t * k + j];
            System.arraycopy(pb.x()[r], t * rb, x, row * rb, rb);
            if (sc > 0) {
              System.arraycopy(pb.scales()[r], t * sc, scales, row * sc, sc);
            }
            w[row] = pb.topkW()[r][t * k + j];
          }
          if (toD) {
            pairs.add(new int[] {r, t});
          }
        }
      }
      out[d] =
          new DispatchOut(total[d], x, scales, w, slotCounts[d],
              pairs.stream().mapToInt(a -> a[0]).toArray(),
              pairs.stream().mapToInt(a -> a[1]).toArray());
    }
    return out;
  }

  /** Combine: y[d] are expert outputs (combine dtype bytes) in d's dispatch row layout. */
  static byte[][] combine(Problem pb, byte[][] y) {
    var c = pb.cfg();
    int nR = c.ranks();
    int s = c.slotsPerRank();
    int k = c.topk();
    int h = c.hidden();
    DType dt = c.combineType();
    int[][] ids = new int[nR][];
    float[][] yf = new float[nR][];
    for (int r = 0; r < nR; r++) {
      ids[r] = slotIds(c, r, pb.topkIdx()[r]);
      yf[r] = decode(y[r], dt);
    }
    int[][] rows = recvRows(nR, s, k, pb.tokens(), ids);
    byte[][] out = new byte[nR][];
    for (int r = 0; r < nR; r++) {
      int tn = pb.tokens()[r];
      float[] o = new float[tn * h];
      for (int t = 0; t < tn; t++) {
        // the token's selections: destination ranks ascending, local slots ascending inside
        int[] dests = destRanks(ids[r], k, s, t);
        int[][] selRows = new int[dests.length][];
        float[][] selW = new float[dests.length][];
        for (int i = 0; i < dests.length; i++) {
          int d = dests[i];
          List<int[]> sel = new ArrayList<>();
          for (int ls = 0; ls < s; ls++) {
            for (int j = 0; j < k; j++) {
              if (ids[r][t * k + j] == d * s + ls) {
                sel.add(new int[] {rows[r][t * k + j], j});
              }
            }
          }
          selRows[i] = sel.stream().mapToInt(a -> a[0]).toArray();
          selW[i] = new float[sel.size()];
          for (int q = 0; q < sel.size(); q++) {
            selW[i][q] = pb.topkW()[r][t * k + sel.get(q)[1]];
          }
        }
        for (int ch = 0; ch < h; ch++) {
          float acc = 0.0f;
          for (int i = 0; i < dests.length; i++) {
            float part = 0.0f;
            for (int q = 0; q < selRows[i].length; q++) {
              part = part + selW[i][q] * yf[dests[i]][selRows[i][q] * h + ch];
            }
            acc = acc + round(part, dt);
          }
          o[t * h + ch] = round(acc, dt);
        }
      }
      out[r] = encode(o, dt);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Dtypes (round to nearest even)
  // ---------------------------------------------------------------------------------------------

  static short toBf16(float f) {
    int b = Float.floatToRawIntBits(f);
    if (Float.isNaN(f)) {
      return (short) ((b >>> 16) | 0x40);
    }
    b += 0x7fff + ((b >>> 16) & 1);
    return (short) (b >>> 16);
  }

  static float fromBf16(short v) {
    return Float.intBitsToFloat((v & 0xffff) << 16);
  }

  static float round(float f, DType dt) {
    return switch (dt) {
      case BF16 -> fromBf16(toBf16(f));
      case FP16 -> Float.float16ToFloat(Float.floatToFloat16(f));
      case FP32 -> f;
      case FP8_E4M3 -> throw new IllegalArgumentException("no FP8 arithmetic");
    };
  }

  static byte[] encode(float[] f, DType dt) {
    ByteBuffer b = ByteBuffer.allocate(f.length * dt.bytes()).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : f) {
      switch (dt) {
        case BF16 -> b.putShort(toBf16(v));
        case FP16 -> b.putShort(Float.floatToFloat16(v));
        case FP32 -> b.putFloat(v);
        case FP8_E4M3 -> throw new IllegalArgumentException("no FP8 encoding");
      }
    }
    return b.array();
  }

  static float[] decode(byte[] raw, DType dt) {
    ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
    float[] f = new float[raw.length / dt.bytes()];
    for (int i = 0; i < f.length; i++) {
      f[i] =
          switch (dt) {
            case BF16 -> fromBf16(b.getShort());
            case FP16 -> Float.float16ToFloat(b.getShort());
            case FP32 -> b.getFloat();
            case FP8_E4M3 -> throw new IllegalArgumentException("no FP8 decoding");
          };
    }
    return f;
  }
}
