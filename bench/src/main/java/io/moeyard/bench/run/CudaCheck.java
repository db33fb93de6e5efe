package io.moeyard.bench.run;

import io.moeyard.cuda.CudaBackend;
import io.moeyard.comm.CommConfig;
import io.moeyard.testkit.Workload;
import java.lang.foreign.MemorySegment;

/**
 * The CUDA backend on a {@link Workload}, and its outputs compared bit for bit with the CPU
 * backend's ({@link CpuRun}). Every compare returns null when equal, else the first difference.
 */
final class CudaCheck {
  private CudaCheck() {}

  /**
   * The sizes of a workload: its dtypes, its most tokens per rank, and receive buffers of the most
   * rows a rank receives in it (the worst case would hold every rank's tokens on every rank, far
   * more device memory than the bench's shapes need).
   */
  static CommConfig config(Workload wl) {
    int maxTokens = 0;
    int maxRows = 0;
    for (int r = 0; r < wl.ranks(); r++) {
      maxTokens = Math.max(maxTokens, wl.tokens[r]);
      maxRows = Math.max(maxRows, wl.ref.rowsReceivedBy(r));
    }
    CommConfig c = CommConfig.of(maxTokens, wl.hidden, wl.topk, wl.dtype, wl.outType);
    return maxRows > 0 ? c.withReceiveRows(maxRows) : c;
  }

  /** The CUDA backend for a workload: its expert map (ranks, nodes, slots, replicas) and {@link #config}. */
  static CudaBackend open(Workload wl) {
    return CudaBackend.open(wl.map, config(wl));
  }

  static void upload(CudaBackend be, Workload wl) {
    for (int r = 0; r < wl.ranks(); r++) {
      be.upload(r, new CudaBackend.RankInput(wl.tokens[r], wl.x[r], wl.dtype.hasScales() ? wl.xScales[r] : null,
          wl.idx[r], wl.w[r]));
    }
  }

  /**
   * Runs both variants on {@code be} (inputs uploaded) and compares every output with {@code cpu}
   * (the CPU fused path on the same workload): fused dispatch, fused combine, unfused dispatch,
   * unfused combine. Returns null when all are equal bit for bit, else the first difference.
   */
  static String verify(CudaBackend be, Workload wl, CpuRun cpu) {
    return verify(be, wl, cpu, CudaBackend.Variant.FUSED, CudaBackend.Variant.UNFUSED);
  }

  /** As {@link #verify(CudaBackend, Workload, CpuRun)}, for the given variants only. */
  static String verify(CudaBackend be, Workload wl, CpuRun cpu, CudaBackend.Variant... variants) {
    for (CudaBackend.Variant v : variants) {
      boolean fused = v == CudaBackend.Variant.FUSED;
      CudaBackend.DispatchResult[] got = be.dispatch(v);
      for (int d = 0; d < wl.ranks(); d++) {
        String p = compareDispatch(cpu, wl, d, got[d], fused);
        if (p != null) return "cuda " + v.name().toLowerCase(java.util.Locale.ROOT) + " dispatch: " + p;
        got[d] = null; // let the rows go before the next download
      }
      for (int d = 0; d < wl.ranks(); d++) be.setExpertOutputs(d, wl.y[d]);
      byte[][] out = be.combine(v);
      for (int r = 0; r < wl.ranks(); r++) {
        String p = compareRows(cpu.out[r].segment(), cpu.out[r].offset(), cpu.out[r].byteSize(), out[r], wl.outRowBytes(), "combine output", r);
        if (p != null) return "cuda " + v.name().toLowerCase(java.util.Locale.ROOT) + " combine: " + p;
      }
    }
    return null;
  }

  static String compareDispatch(CpuRun cpu, Workload wl, int d, CudaBackend.DispatchResult got, boolean fused) {
    if (got.rows() != cpu.rows[d]) return "rank " + d + " received " + got.rows() + " rows, cpu " + cpu.rows[d];
    String p = compareInts(cpu.slotCounts[d], got.slotCounts(), "slot counts", d);
    if (p == null) p = compareRows(cpu.recv[d].segment(), cpu.recv[d].offset(), (long) cpu.rows[d] * wl.rowBytes(), got.recvX(), wl.rowBytes(), "received row", d);
    if (p == null) p = compareFloats(cpu.recvWeights[d], got.recvWeights(), "received weight of row", d);
    if (p == null) p = compareFloats(cpu.recvScales[d], got.recvScales(), "received fp8 scale", d);
    if (p == null && got.pairs() != cpu.pairs[d]) p = "rank " + d + " received " + got.pairs() + " token-rank pairs, cpu " + cpu.pairs[d];
    if (p == null && fused) p = compareInts(cpu.pairSrc[d], got.pairSrc(), "pair source rank", d);
    if (p == null && fused) p = compareInts(cpu.pairToken[d], got.pairToken(), "pair source token", d);
    if (p == null) p = compareInts(cpu.numTokensPerRank[d], got.numTokensPerRank(), "numTokensPerRank", d);
    if (p == null) {
      byte[] want = cpu.isTokenInRank[d];
      byte[] have = got.isTokenInRank();
      int i = java.util.Arrays.mismatch(want, have);
      if (i >= 0) {
        p = i >= Math.min(want.length, have.length)
            ? "rank " + d + " isTokenInRank has " + have.length + " entries, cpu " + want.length
            : "rank " + d + " isTokenInRank[" + (i / wl.ranks()) + "][" + (i % wl.ranks()) + "] = " + have[i] + ", cpu " + want[i];
      }
    }
    return p;
  }

  /** {@code wantBytes} bytes of rows in {@code want} (from {@code at}) vs all of {@code got}. */
  static String compareRows(MemorySegment want, long at, long wantBytes, byte[] got, long rowBytes, String what, int rank) {
    MemorySegment g = MemorySegment.ofArray(got);
    long n = got.length;
    if (n != wantBytes) return "rank " + rank + ": " + what + "s have " + n + " bytes, cpu " + wantBytes;
    long i = MemorySegment.mismatch(want, at, at + n, g, 0, n);
    if (i < 0) return null;
    long row = i / rowBytes;
    return "rank " + rank + " " + what + " " + row + " differs at byte " + (i % rowBytes) + " (cpu 0x"
        + Integer.toHexString(want.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + i) & 0xff) + ", got 0x"
        + Integer.toHexString(got[(int) i] & 0xff) + ")";
  }

  static String compareInts(int[] want, int[] got, String what, int rank) {
    int i = java.util.Arrays.mismatch(want, got);
    if (i < 0) return null;
    if (i >= Math.min(want.length, got.length)) return "rank " + rank + " has " + got.length + " " + what + " entries, cpu " + want.length;
    return "rank " + rank + " " + what + " [" + i + "] = " + got[i] + ", cpu " + want[i];
  }

  /** Bit patterns, not values: -0 != 0 and NaN payloads count. */
  static String compareFloats(float[] want, float[] got, String what, int rank) {
    if (want.length != got.length) return "rank " + rank + " has " + got.length + " " + what + " entries, cpu " + want.length;
    for (int i = 0; i < want.length; i++) {
      if (Float.floatToRawIntBits(want[i]) != Float.floatToRawIntBits(got[i])) {
        return "rank " + rank + " " + what + " " + i + " = " + got[i] + ", cpu " + want[i];
      }
    }
    return null;
  }
}
