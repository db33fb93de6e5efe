package io.moeyard.cuda;

import io.moeyard.testkit.Workload;

/**
 * A test kit {@link Workload} on the device, as an engine would hold it: each rank's token rows
 * (and FP8 scales), routing, expert outputs, a combine output, optionally a receive buffer of its
 * own ({@code into}), and a stream. What the GPU tests, {@code moeyard selftest} and {@code moeyard
 * bench} hand to the communicators' device path in place of an engine's memory. Owns all of it;
 * {@link #close()} waits for each stream and frees everything.
 */
public final class DeviceWorkload implements AutoCloseable {
  private final Workload wl;
  private final int intoRows;
  private final DeviceBuffer[] x;
  private final DeviceBuffer[] scales;
  private final DeviceBuffer[] idx;
  private final DeviceBuffer[] w;
  private final DeviceBuffer[] y;
  private final DeviceBuffer[] out;
  private final DeviceBuffer[] into;
  private final long[] streams;

  /**
   * Uploads {@code wl}; {@code intoRows > 0} also gives every rank a receive buffer of that many
   * rows (FP8 scales after the rows), filled with a pattern so that unwritten rows show.
   */
  public DeviceWorkload(Workload wl, int intoRows) {
    this(wl, intoRows, -1);
  }

  /**
   * Uploads only rank {@code rank}'s part of {@code wl} (-1: every rank's): what one rank process
   * holds; the other ranks' accessors then fail.
   */
  public DeviceWorkload(Workload wl, int intoRows, int rank) {
    if (intoRows < 0) throw new IllegalArgumentException("intoRows must be >= 0, got " + intoRows);
    if (rank < -1 || rank >= wl.ranks()) throw new IllegalArgumentException("rank " + rank + " is outside [-1, " + wl.ranks() + ")");
    this.wl = wl;
    this.intoRows = intoRows;
    int n = wl.ranks();
    x = new DeviceBuffer[n];
    scales = new DeviceBuffer[n];
    idx = new DeviceBuffer[n];
    w = new DeviceBuffer[n];
    y = new DeviceBuffer[n];
    out = new DeviceBuffer[n];
    into = new DeviceBuffer[n];
    streams = new long[n];
    boolean ok = false;
    try {
      for (int r = 0; r < n; r++) {
        if (rank >= 0 && r != rank) continue;
        x[r] = DeviceBuffer.allocate(wl.x[r].length);
        x[r].upload(wl.x[r]);
        if (wl.scalesPerRow() > 0) {
          scales[r] = DeviceBuffer.allocate(4L * wl.xScales[r].length);
          scales[r].upload(wl.xScales[r]);
        }
        idx[r] = DeviceBuffer.allocate(4L * wl.idx[r].length);
        idx[r].upload(wl.idx[r]);
        w[r] = DeviceBuffer.allocate(4L * wl.w[r].length);
        w[r].upload(wl.w[r]);
        y[r] = DeviceBuffer.allocate(wl.y[r].length);
        y[r].upload(wl.y[r]);
        out[r] = DeviceBuffer.allocate((long) wl.tokens[r] * wl.outRowBytes());
        out[r].fill(0x7f); // never zeros: an unwritten output must show
        if (intoRows > 0) {
          into[r] = DeviceBuffer.allocate((long) intoRows * rowBytes() + 4L * intoRows * wl.scalesPerRow());
          into[r].fill(0x55);
        }
        streams[r] = NativeKernels.streamCreate();
      }
      ok = true;
    } finally {
      if (!ok) close();
    }
  }

  private long rowBytes() {
    return (long) wl.hidden * wl.dtype.bytes();
  }

  public DeviceRows x(int r) {
    return new DeviceRows(x[r].address(), wl.tokens[r], wl.hidden, wl.dtype, scales[r] == null ? 0L : scales[r].address());
  }

  public DeviceRouting routing(int r) {
    return new DeviceRouting(idx[r].address(), w[r].address(), wl.tokens[r], wl.topk);
  }

  /** The first {@code rows} of rank r's expert outputs (as many as its dispatch received). */
  public DeviceRows y(int r, int rows) {
    return DeviceRows.of(y[r].address(), rows, wl.hidden, wl.outType);
  }

  public DeviceRows out(int r) {
    return DeviceRows.of(out[r].address(), wl.tokens[r], wl.hidden, wl.outType);
  }

  /** Rank r's own receive buffer; only when built with {@code intoRows > 0}. */
  public DeviceRows into(int r) {
    if (into[r] == null) throw new IllegalStateException("this workload was uploaded without receive buffers");
    long a = into[r].address();
    return new DeviceRows(a, intoRows, wl.hidden, wl.dtype, wl.scalesPerRow() > 0 ? a + intoRows * rowBytes() : 0L);
  }

  public CudaStream stream(int r) {
    return new CudaStream(streams[r]);
  }

  /** Rank r's combine output, once its stream is done. */
  public byte[] outBytes(int r) {
    NativeKernels.streamSynchronize(streams[r]);
    return out[r].downloadBytes(Math.toIntExact(out[r].byteSize()));
  }

  @Override
  public void close() {
    RuntimeException err = null;
    for (int r = 0; r < streams.length; r++) {
      long st = streams[r];
      if (st != 0) {
        streams[r] = 0;
        err = Release.attempt(err, () -> {
          NativeKernels.streamSynchronize(st);
          NativeKernels.streamDestroy(st);
        });
      }
      for (DeviceBuffer b : new DeviceBuffer[] {x[r], scales[r], idx[r], w[r], y[r], out[r], into[r]}) {
        if (b != null) err = Release.attempt(err, b::close);
      }
    }
    if (err != null) throw err;
  }
}
