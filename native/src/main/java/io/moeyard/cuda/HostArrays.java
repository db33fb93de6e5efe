package io.moeyard.cuda;

import java.util.Arrays;
import java.util.Objects;

/**
 * The host-array path, for tests and the benchmark: each rank's input and expert outputs copied
 * into its device buffers, the results copied back into fresh arrays. Everything is checked before
 * the first copy, so bad input changes nothing on the device.
 */
final class HostArrays {
  private HostArrays() {}

  /**
   * Checks one rank's input against the shape; throws {@link IllegalArgumentException} naming the
   * first bad value (token count, shapes, expert ids outside [-1, E), a logical expert twice in one row).
   */
  static void validate(KernelShape shape, int r, CudaBackend.RankInput in) {
    int nK = shape.topk();
    Objects.requireNonNull(in, "input");
    int t = in.tokens();
    if (t < 0) {
      throw new IllegalArgumentException("rank " + r + ": negative token count " + t);
    }
    if (t > shape.maxTokens()) {
      throw new IllegalArgumentException(
          "rank " + r + ": " + t + " tokens, the backend was opened for at most " + shape.maxTokens());
    }
    long rows = (long) t * shape.rowBytes();
    if (in.x() == null || in.x().length != rows) {
      throw new IllegalArgumentException(
          "rank " + r + ": x must have " + rows + " bytes, has "
              + (in.x() == null ? "null" : in.x().length));
    }
    if (shape.scaleCols() > 0
        && (in.scales() == null || in.scales().length != (long) t * shape.scaleCols())) {
      throw new IllegalArgumentException(
          "rank " + r + ": FP8 scales must have " + (long) t * shape.scaleCols() + " floats");
    }
    int tk = t * nK;
    if (in.topkIdx() == null || in.topkIdx().length != tk) {
      throw new IllegalArgumentException("rank " + r + ": topkIdx must have " + tk + " entries");
    }
    if (in.topkWeights() == null || in.topkWeights().length != tk) {
      throw new IllegalArgumentException("rank " + r + ": topkWeights must have " + tk + " entries");
    }
    int experts = shape.experts();
    int[] idx = in.topkIdx();
    for (int i = 0; i < t; i++) {
      for (int k = 0; k < nK; k++) {
        int e = idx[i * nK + k];
        if (e < -1 || e >= experts) {
          throw new IllegalArgumentException(
              "rank " + r + ": topkIdx[" + i + "][" + k + "] = " + e + " outside [-1, " + experts + ")");
        }
        for (int q = 0; q < k && e >= 0; q++) {
          if (idx[i * nK + q] == e) {
            throw new IllegalArgumentException(
                "rank " + r + ": token " + i + " selects logical expert " + e + " twice");
          }
        }
      }
    }
  }

  /** Copies rank {@code r}'s input, {@link #validate validated} before, into the rank's buffers. */
  static void upload(VirtualRanks w, int r, CudaBackend.RankInput in) {
    RankBuffers b = w.buf[r];
    NativeKernels.bytesToDevice(in.x(), 0, in.x().length, b.x);
    if (w.shape.scaleCols() > 0) {
      NativeKernels.floatsToDevice(in.scales(), 0, in.scales().length, b.scales);
    }
    NativeKernels.intsToDevice(in.topkIdx(), 0, in.topkIdx().length, b.topkIdx);
    NativeKernels.floatsToDevice(in.topkWeights(), 0, in.topkWeights().length, b.topkW);
    w.counts[r].tokens = in.tokens();
  }

  /** Checks and copies rank {@code d}'s expert outputs: its received rows, in the combine dtype. */
  static void expertOutputs(VirtualRanks w, int d, byte[] y) {
    RankCounts c = w.counts[d];
    long want = (long) c.rows * w.shape.combineRowBytes();
    if (y == null || y.length != want) {
      throw new IllegalArgumentException(
          "rank " + d + ": expert outputs must have " + want + " bytes (" + c.rows + " rows)");
    }
    NativeKernels.bytesToDevice(y, 0, y.length, w.buf[d].y);
  }

  /** Every rank's dispatch output; pair records only after a fused dispatch (the unfused one writes none). */
  static CudaBackend.DispatchResult[] dispatchResults(VirtualRanks w, boolean fused) {
    KernelShape shape = w.shape;
    int nR = w.nR;
    int nS = w.nS;
    int nP = w.nP;
    int sc = shape.scaleCols();
    CudaBackend.DispatchResult[] out = new CudaBackend.DispatchResult[nR];
    for (int d = 0; d < nR; d++) {
      RankBuffers b = w.buf[d];
      RankCounts c = w.counts[d];
      byte[] x = new byte[Math.toIntExact((long) c.rows * shape.rowBytes())];
      NativeKernels.bytesFromDevice(b.recvX, x, 0, x.length);
      float[] scales = new float[c.rows * sc];
      if (sc > 0) {
        NativeKernels.floatsFromDevice(b.recvScales, scales, 0, scales.length);
      }
      float[] wt = new float[c.rows];
      NativeKernels.floatsFromDevice(b.recvW, wt, 0, wt.length);
      int[] slotCounts = new int[nS];
      NativeKernels.intsFromDevice(b.slotTotal, slotCounts, 0, nS);
      int[] src = new int[fused ? c.pairs : 0];
      int[] tok = new int[fused ? c.pairs : 0];
      NativeKernels.intsFromDevice(b.pairSrc, src, 0, src.length);
      NativeKernels.intsFromDevice(b.pairToken, tok, 0, tok.length);
      int[] perRank = Arrays.copyOfRange(c.totals, nP, nP + nR);
      byte[] inRank = new byte[c.tokens * nR];
      NativeKernels.bytesFromDevice(b.inRank, inRank, 0, inRank.length);
      out[d] = new CudaBackend.DispatchResult(c.rows, x, scales, wt, slotCounts, c.pairs, src, tok, perRank, inRank);
    }
    return out;
  }

  /** Every rank's combine output: [T, H] in the combine dtype. */
  static byte[][] combineResults(VirtualRanks w) {
    byte[][] out = new byte[w.nR][];
    for (int r = 0; r < w.nR; r++) {
      out[r] = new byte[Math.toIntExact((long) w.counts[r].tokens * w.shape.combineRowBytes())];
      NativeKernels.bytesFromDevice(w.buf[r].out, out[r], 0, out[r].length);
    }
    return out;
  }
}
