package io.moeyard.bench.run;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Dispatched;
import io.moeyard.cuda.CudaCommunicator;
import io.moeyard.cuda.CudaWorld;
import io.moeyard.cuda.DeviceDispatched;
import io.moeyard.cuda.DeviceWorkload;
import io.moeyard.engine.RowBuffer;
import io.moeyard.testkit.Workload;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Locale;

/**
 * The CUDA backend on a {@link Workload}, through its communicators, and its outputs compared bit
 * for bit with the CPU backend's ({@link CpuRun}). Every compare returns null when equal, else the
 * first difference.
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

  /** The CUDA world for a workload: its expert map (ranks, nodes, slots, replicas) and {@link #config}. */
  static CudaWorld open(Workload wl) {
    return CudaWorld.open(wl.map, config(wl));
  }

  /** What one rank received, as the Communicator API shows it: the compared fields. */
  record Received(int rows, byte[] x, float[] scales, float[] weights, int[] slotCounts, int pairs, int[] rowSrc,
      int[] rowToken) {

    /** From a result; source tokens only when {@code withTokens} (the unfused cuda dispatch has none). */
    static Received of(Dispatched d, int scalesPerRow, boolean withTokens) {
      int n = d.receivedRows();
      RowBuffer b = d.received();
      byte[] x = b.segment().asSlice(b.offset(), n * b.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
      float[] sc = scalesPerRow > 0 ? b.scales().asSlice(0, 4L * n * scalesPerRow).toArray(ValueLayout.JAVA_FLOAT) : new float[0];
      float[] wt = new float[n];
      int[] src = new int[n];
      int[] tok = withTokens ? new int[n] : null;
      for (int i = 0; i < n; i++) {
        wt[i] = d.receivedWeight(i);
        src[i] = d.rowSourceRank(i);
        if (withTokens) tok[i] = d.rowSourceToken(i);
      }
      int[] counts = new int[d.slots()];
      for (int e = 0; e < counts.length; e++) counts[e] = d.slotCount(e);
      return new Received(n, x, sc, wt, counts, d.receivedPairs(), src, tok);
    }
  }

  /**
   * Runs the given variants on the device path ({@code eng}: the workload in device memory, one
   * stream per rank) and compares every output with {@code cpu} (the CPU fused path on the same
   * workload). Returns null when all are equal bit for bit, else the first difference.
   */
  static String verify(CudaWorld world, DeviceWorkload eng, Workload wl, CpuRun cpu, CommConfig.Variant... variants) {
    for (CommConfig.Variant v : variants) {
      world.useVariant(v);
      String p = first(world.run(c -> verifyRank(c, eng, wl, cpu, v)));
      if (p != null) return p;
    }
    return null;
  }

  /**
   * One rank's part of {@link #verify} on the world's current variant {@code v} (set on every rank
   * before): a collective, so every rank calls it; {@code cpu} needs only this rank's outputs.
   */
  static String verifyRank(CudaCommunicator c, DeviceWorkload eng, Workload wl, CpuRun cpu, CommConfig.Variant v) {
    String name = "cuda " + v.name().toLowerCase(Locale.ROOT);
    int r = c.rank();
    DeviceDispatched d = c.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
    String q = compareDispatch(cpu, wl, r, Received.of(c.download(d), wl.scalesPerRow(), v == CommConfig.Variant.FUSED));
    if (q != null) q = name + " dispatch: " + q;
    c.combine(d, eng.y(r, d.receivedRows()), eng.out(r), eng.stream(r));
    if (q == null) q = compareOut(cpu, wl, r, eng.outBytes(r), name);
    return q;
  }

  /** The same through the host path (the Communicator's RowBuffer methods), fused. */
  static String verifyHost(CudaWorld world, Workload wl, CpuRun cpu) {
    world.useVariant(CommConfig.Variant.FUSED);
    return first(world.run(c -> {
      int r = c.rank();
      Dispatched d = c.dispatch(wl.x(r), wl.routing(r));
      String q = compareDispatch(cpu, wl, r, Received.of(d, wl.scalesPerRow(), true));
      if (q != null) return "cuda host path dispatch: " + q;
      byte[] out = new byte[Math.toIntExact((long) wl.tokens[r] * wl.outRowBytes())];
      c.combine(d, wl.y(r), RowBuffer.of(MemorySegment.ofArray(out), wl.tokens[r], wl.hidden, wl.outType));
      return compareOut(cpu, wl, r, out, "cuda host path");
    }));
  }

  static String compareOut(CpuRun cpu, Workload wl, int r, byte[] out, String name) {
    String p = compareRows(cpu.out[r].segment(), cpu.out[r].offset(), cpu.out[r].byteSize(), out, wl.outRowBytes(), "combine output", r);
    return p == null ? null : name + " combine: " + p;
  }

  private static String first(List<String> problems) {
    for (String p : problems) if (p != null) return p;
    return null;
  }

  static String compareDispatch(CpuRun cpu, Workload wl, int d, Received got) {
    if (got.rows() != cpu.rows[d]) return "rank " + d + " received " + got.rows() + " rows, cpu " + cpu.rows[d];
    String p = compareInts(cpu.slotCounts[d], got.slotCounts(), "slot counts", d);
    if (p == null) p = compareRows(cpu.recv[d].segment(), cpu.recv[d].offset(), (long) cpu.rows[d] * wl.rowBytes(), got.x(), wl.rowBytes(), "received row", d);
    if (p == null) p = compareFloats(cpu.recvWeights[d], got.weights(), "received weight of row", d);
    if (p == null) p = compareFloats(cpu.recvScales[d], got.scales(), "received fp8 scale", d);
    if (p == null && got.pairs() != cpu.pairs[d]) p = "rank " + d + " received " + got.pairs() + " token-rank pairs, cpu " + cpu.pairs[d];
    if (p == null) p = compareInts(cpu.rowSrc[d], got.rowSrc(), "source rank of row", d);
    if (p == null && got.rowToken() != null) p = compareInts(cpu.rowToken[d], got.rowToken(), "source token of row", d);
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
        + Integer.toHexString(want.get(ValueLayout.JAVA_BYTE, at + i) & 0xff) + ", got 0x"
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
