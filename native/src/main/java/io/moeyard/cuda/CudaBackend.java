package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.ExpertMap;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/**
 * The {@code cuda} backend: R virtual ranks on one GPU. Each rank has its own device buffers and
 * its own stream; dispatch and combine kernels store straight into peer ranks' buffers, exactly as
 * they would through CUDA IPC on an NVLink node. Cross-rank order is expressed with events
 * (a rank's stream waits for the events of the ranks it depends on), never with a device-wide
 * barrier.
 *
 * <p>API on plain arrays, for tests, the benchmark and as the reference driver of the kernels:
 * {@link #upload} each rank's tokens, {@link #dispatch} (fused or the unfused baseline), then
 * {@link #setExpertOutputs} per rank and {@link #combine}. Rows are raw little-endian element bytes
 * in the config's dispatch dtype (BF16 / FP16 as 16-bit patterns). Results follow the layout contract of
 * shuffle-engine/docs/data-path.md bit for bit.
 *
 * <p>Resources: device memory, streams and events are owned by the native library and released by
 * {@link #close()}. One operation at a time per backend (not thread-safe); the async forms run the
 * enqueue on the calling thread and wait for completion on a daemon thread.
 */
public final class CudaBackend implements AutoCloseable {

  /** Whether the backend can run here; never throws. */
  public static CudaAvailability availability() {
    return CudaAvailability.get();
  }

  /** Which data path to run. */
  public enum Variant {
    /** Fused: layout-aware kernels, one read per token row, direct stores into final rows. */
    FUSED,
    /** Megatron-style baseline: permute, per-peer copy, sort chunks (and the reverse). */
    UNFUSED
  }

  /**
   * One rank's input.
   *
   * @param tokens T
   * @param x [T, H] raw element bytes in the config dtype
   * @param scales [T, H/128] for FP8-E4M3, else null
   * @param topkIdx [T, K] logical experts, -1 = not routed
   * @param topkWeights [T, K]
   */
  public record RankInput(int tokens, byte[] x, float[] scales, int[] topkIdx, float[] topkWeights) {}

  /**
   * One rank's dispatch output.
   *
   * @param rows received rows (sum of slotCounts)
   * @param recvX [rows, H] in the dispatch dtype, expert-major
   * @param recvScales [rows, H/128] (FP8 only, else empty)
   * @param recvWeights [rows] the top-k weight of each row's selection
   * @param slotCounts [S] rows per local slot
   * @param pairs received token-rank pairs
   * @param pairSrc [pairs] source rank of each received pair (rank-major, token ascending); empty
   *     after an unfused dispatch (it writes no pair records)
   * @param pairToken [pairs] source token of each received pair (empty after an unfused dispatch)
   * @param numTokensPerRank [R] tokens this rank sends to each rank (its layout)
   * @param isTokenInRank [T, R] of this rank's tokens
   */
  public record DispatchResult(
      int rows,
      byte[] recvX,
      float[] recvScales,
      float[] recvWeights,
      int[] slotCounts,
      int pairs,
      int[] pairSrc,
      int[] pairToken,
      int[] numTokensPerRank,
      byte[] isTokenInRank) {}

  private final KernelShape shape;
  private final int nR;
  private final int nS;
  private final int nP;
  private final int nK;
  private final int nH;
  private final Arena global = new Arena();
  private final long[] streams;
  private final long[] evStage;
  private final long[] evSend;
  private final long[] evDone;
  private final long mapOffsets;
  private final long mapSlots;
  private final Rank[] rank;
  private final ExecutorService waiter;
  private final int layoutChunk;
  private boolean dispatched;
  private Variant lastDispatch;
  private boolean closed;
  private long lastNanos;
  private long evStart;
  private long evEnd;
  private float lastDeviceMs;
  private int shortHolds;

  /**
   * How long stream 0 is held busy before a timed call's start event, so that the event fires after
   * the host has enqueued the call's kernels (its launch latency stays out of the device time).
   */
  static final long HOLD_NS = 2_000_000L;

  /** The tuned fused kernels (the default). */
  public static final int KERNELS_TUNED = 0;
  /** The untuned fused kernels of simple.cu: same results; for measuring what the tuning buys. */
  public static final int KERNELS_SIMPLE = 1;

  /**
   * Which fused kernels run: {@link #KERNELS_TUNED}, {@link #KERNELS_SIMPLE}, or a combine tuning
   * candidate (2 and up, listed in combine.cu); {@code -Dmoeyard.cuda.kernels=simple} or a number at
   * open, or {@link #useKernels}. For benchmarks, not for use.
   */
  private int kernels = kernelsProperty();

  private static int kernelsProperty() {
    String v = System.getProperty("moeyard.cuda.kernels", "tuned");
    return switch (v) {
      case "tuned" -> KERNELS_TUNED;
      case "simple" -> KERNELS_SIMPLE;
      default -> {
        try {
          yield Integer.parseInt(v);
        } catch (NumberFormatException e) {
          throw new IllegalArgumentException("-Dmoeyard.cuda.kernels=" + v + ": want tuned, simple or a variant number");
        }
      }
    };
  }

  /** The fused kernel set this backend runs (see {@link #useKernels}). */
  public int kernels() {
    return kernels;
  }

  /** Switches the fused kernel set: {@link #KERNELS_TUNED}, {@link #KERNELS_SIMPLE} or a combine candidate. */
  public void useKernels(int kernelSet) {
    checkOpen();
    awaitPending();
    if (kernelSet < 0) {
      throw new IllegalArgumentException("kernel set " + kernelSet + " < 0");
    }
    kernels = kernelSet;
  }

  private CudaBackend(KernelShape shape) {
    this.shape = shape;
    this.nR = shape.ranks();
    this.nS = shape.slotsPerRank();
    this.nP = shape.slots();
    this.nK = shape.topk();
    this.nH = shape.hidden();
    this.streams = new long[nR];
    this.evStage = new long[nR];
    this.evSend = new long[nR];
    this.evDone = new long[nR];
    this.rank = new Rank[nR];
    this.layoutChunk = NativeKernels.limits()[3]; // cfg::kLayoutChunkTokens
    this.waiter =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, "moeyard-cuda-waiter");
              t.setDaemon(true);
              return t;
            });
    boolean ok = false;
    try {
      NativeKernels.setDevice(0);
      for (int r = 0; r < nR; r++) {
        streams[r] = NativeKernels.streamCreate();
        evStage[r] = NativeKernels.eventCreate(false);
        evSend[r] = NativeKernels.eventCreate(false);
        evDone[r] = NativeKernels.eventCreate(false);
        rank[r] = new Rank();
      }
      evStart = NativeKernels.eventCreate(true);
      evEnd = NativeKernels.eventCreate(true);
      int[] offs = shape.csrOffsets();
      int[] slots = shape.csrSlots();
      mapOffsets = global.ints(offs);
      mapSlots = global.ints(slots);
      ok = true;
    } finally {
      if (!ok) {
        close();
      }
    }
  }

  /**
   * Opens the backend on device 0 for {@code map} (its topology, slots and replicas) and the sizes
   * of {@code config}, or throws {@link CudaUnavailableException} with the reason. A shape the
   * kernels cannot take throws {@link IllegalArgumentException} naming the value, before the
   * device is touched.
   */
  public static CudaBackend open(ExpertMap map, CommConfig config) {
    KernelShape shape = KernelShape.of(map, config);
    availability().require();
    return new CudaBackend(shape);
  }

  /** Throws {@link IllegalArgumentException} naming the value when the kernels cannot run this shape; touches no device. */
  public static void check(ExpertMap map, CommConfig config) {
    KernelShape.of(map, config);
  }

  public ExpertMap expertMap() {
    return shape.map();
  }

  public CommConfig config() {
    return shape.comm();
  }

  /** Host wall time of the last dispatch or combine, enqueue to completion, without downloads. */
  public long lastNanos() {
    return lastNanos;
  }

  /**
   * Device time (CUDA events) of the data phase of the last operation: for a dispatch, from the
   * moment every rank's receive offsets are known to the last destination done (the layout and
   * the host's count read are not in it); for a combine, all of it.
   */
  public float lastDeviceMs() {
    return lastDeviceMs;
  }

  /**
   * Timed calls whose start event had already fired when their enqueue ended (so their time holds
   * part of the launch latency): the hold before each start event ({@link #HOLD_NS}) was too short.
   */
  public int shortHolds() {
    return shortHolds;
  }

  /** Device-to-device copy of {@code bytes} on one stream, median of {@code iters} timed runs (ms): the roofline. */
  public float copyMillis(long bytes, int iters) {
    checkOpen();
    long a = NativeKernels.malloc(bytes);
    long b = 0;
    try {
      b = NativeKernels.malloc(bytes);
      NativeKernels.memsetAsync(a, 1, bytes, streams[0]);
      float[] ms = new float[Math.max(1, iters)];
      for (int i = -1; i < ms.length; i++) { // one warm-up
        NativeKernels.hold(HOLD_NS, streams[0]);
        NativeKernels.eventRecord(evStart, streams[0]);
        NativeKernels.copyDeviceToDeviceAsync(b, a, bytes, streams[0]);
        NativeKernels.eventRecord(evEnd, streams[0]);
        NativeKernels.eventSynchronize(evEnd);
        if (i >= 0) {
          ms[i] = NativeKernels.eventElapsedMs(evStart, evEnd);
        }
      }
      Arrays.sort(ms);
      return ms[ms.length / 2];
    } finally {
      NativeKernels.free(a);
      NativeKernels.free(b);
    }
  }

  /** All streams start after evStart, recorded on stream 0 once it has waited for {@code after}. */
  private void startClock(long[] after) {
    if (after != null) {
      for (long e : after) {
        NativeKernels.streamWaitEvent(streams[0], e);
      }
    }
    NativeKernels.hold(HOLD_NS, streams[0]);
    NativeKernels.eventRecord(evStart, streams[0]);
    for (int r = 1; r < nR; r++) {
      NativeKernels.streamWaitEvent(streams[r], evStart);
    }
  }

  /** evEnd on stream 0 after every rank's evDone. */
  private void stopClock() {
    // The whole call is enqueued now; had the start event already fired, the hold was shorter
    // than the enqueue and the clock counted part of the launch latency.
    if (NativeKernels.eventQuery(evStart)) {
      shortHolds++;
    }
    for (int r = 0; r < nR; r++) {
      NativeKernels.streamWaitEvent(streams[0], evDone[r]);
    }
    NativeKernels.eventRecord(evEnd, streams[0]);
  }

  /** Uploads one rank's tokens (validated first; nothing is changed on bad input). */
  public void upload(int r, RankInput in) {
    checkOpen();
    awaitPending();
    Objects.checkIndex(r, nR);
    validate(shape, r, in);
    Rank s = rank[r];
    s.in.close();
    s.t = in.tokens();
    int tk = s.t * nK;
    s.x = s.in.bytes(in.x());
    s.scales = shape.scaleCols() > 0 ? s.in.floats(in.scales()) : 0L;
    s.topkIdx = s.in.ints(in.topkIdx());
    s.topkW = s.in.floats(in.topkWeights());
    int nb = nP + nR;
    int chunks = Math.max(1, (s.t + layoutChunk - 1) / layoutChunk);
    s.slotIds = s.in.alloc(4L * tk);
    s.pos = s.in.alloc(4L * tk);
    s.pairPos = s.in.alloc(4L * tk);
    s.pairIdx = s.in.alloc(4L * tk);
    s.inRank = s.in.alloc((long) s.t * nR);
    s.pairOffset = s.in.alloc(4L * (s.t + 1));
    s.chunkCounts = s.in.alloc(4L * chunks * nb);
    s.chunkBase = s.in.alloc(4L * chunks * nb);
    s.totals = s.in.alloc(4L * nb);
    s.slotPrefix = s.in.alloc(4L * (nP + 1));
    s.chunkPairBase = s.in.alloc(4L * (chunks + 1));
    s.uploaded = true;
    dispatched = false;
  }

  /**
   * Checks one rank's input against the shape; throws {@link IllegalArgumentException} naming the
   * first bad value (token count, shapes, expert ids outside [-1, E), a logical expert twice in one row).
   */
  static void validate(KernelShape shape, int r, RankInput in) {
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

  /** Runs a dispatch on all ranks and returns each rank's output. */
  public DispatchResult[] dispatch(Variant v) {
    enqueueDispatch(v);
    return finish(this::downloadDispatch);
  }

  /**
   * Runs a dispatch on all ranks and waits for it, without copying anything to the host: for
   * timing ({@link #lastDeviceMs()}); the results stay on the device for a following combine.
   */
  public void dispatchOnDevice(Variant v) {
    enqueueDispatch(v);
    finish(() -> null);
  }

  /** Enqueues a dispatch (this thread waits only for the layout counts); completes off-thread. */
  public CompletableFuture<DispatchResult[]> dispatchAsync(Variant v) {
    enqueueDispatch(v);
    CompletableFuture<DispatchResult[]> f = CompletableFuture.supplyAsync(() -> finish(this::downloadDispatch), waiter);
    pending = f;
    return f;
  }

  /** The last async operation, until the next operation has waited for it. */
  private CompletableFuture<?> pending;

  /**
   * One operation at a time: an operation started before the previous async one completed first
   * waits for it (its completion frees the previous operation's pointer tables, which the new one
   * would otherwise race with). Its failure is reported by its own future, not here.
   */
  private void awaitPending() {
    CompletableFuture<?> p = pending;
    pending = null;
    if (p != null) {
      try {
        p.join();
      } catch (RuntimeException ignored) {
        // reported to whoever holds that future
      }
    }
  }

  /** Sets the expert outputs of rank d: [rows_d, H] raw bytes in the combine dtype. */
  public void setExpertOutputs(int d, byte[] y) {
    checkOpen();
    awaitPending();
    Objects.checkIndex(d, nR);
    if (!dispatched) {
      throw new IllegalStateException("dispatch first: the expert outputs follow its row layout");
    }
    Rank s = rank[d];
    long want = (long) s.rows * shape.combineRowBytes();
    if (y == null || y.length != want) {
      throw new IllegalArgumentException(
          "rank " + d + ": expert outputs must have " + want + " bytes (" + s.rows + " rows)");
    }
    if (s.y != 0) {
      s.recv.release(s.y);
    }
    s.y = s.recv.bytes(y);
    s.hasY = true;
  }

  /** Runs a combine on all ranks; returns each rank's [T, H] output in the combine dtype. */
  public byte[][] combine(Variant v) {
    enqueueCombine(v);
    return finish(this::downloadCombine);
  }

  /** Runs a combine on all ranks and waits for it, without copying the outputs to the host (timing). */
  public void combineOnDevice(Variant v) {
    enqueueCombine(v);
    finish(() -> null);
  }

  public CompletableFuture<byte[][]> combineAsync(Variant v) {
    enqueueCombine(v);
    CompletableFuture<byte[][]> f = CompletableFuture.supplyAsync(() -> finish(this::downloadCombine), waiter);
    pending = f;
    return f;
  }

  // ------------------------------------------------------------------------------------------
  // dispatch
  // ------------------------------------------------------------------------------------------

  private long t0;

  private void enqueueDispatch(Variant v) {
    checkOpen();
    awaitPending();
    for (int r = 0; r < nR; r++) {
      if (!rank[r].uploaded) {
        throw new IllegalStateException("rank " + r + " has no input: upload every rank first");
      }
    }
    t0 = System.nanoTime();
    // 1. layout on every source rank
    for (int r = 0; r < nR; r++) {
      Rank s = rank[r];
      long st = streams[r];
      NativeKernels.mapSlots(s.topkIdx, s.t, nK, mapOffsets, mapSlots, shape.experts(), nS,
          shape.localRanks(), r, s.slotIds, st);
      NativeKernels.layoutCount(s.slotIds, s.t, nK, nS, nP, nR, s.chunkCounts, st);
      NativeKernels.layoutScan(s.chunkCounts, s.t, nP, nR, s.chunkBase, s.totals, s.slotPrefix,
          s.chunkPairBase, s.pairOffset, st);
      NativeKernels.layoutPositions(s.slotIds, s.t, nK, nS, nP, nR, s.chunkBase, s.chunkPairBase,
          s.pos, s.pairPos, s.pairIdx, s.inRank, s.pairOffset, st);
    }
    // 2. counts to the host (the one host sync: receive buffers are sized from them)
    for (int r = 0; r < nR; r++) {
      Rank s = rank[r];
      NativeKernels.streamSynchronize(streams[r]);
      s.totalsHost = new int[nP + nR];
      s.slotPrefixHost = new int[nP + 1];
      NativeKernels.intsFromDevice(s.totals, s.totalsHost, 0, nP + nR);
      NativeKernels.intsFromDevice(s.slotPrefix, s.slotPrefixHost, 0, nP + 1);
    }
    // 3. receive buffers and offsets on every destination
    int sc = shape.scaleCols();
    int rb = shape.rowBytes();
    for (int d = 0; d < nR; d++) {
      Rank s = rank[d];
      s.recv.close();
      s.y = 0;
      s.hasY = false;
      int rows = 0;
      int pairs = 0;
      s.stagingPrefixHost = new int[nR * nS + 1];
      for (int r = 0; r < nR; r++) {
        for (int ls = 0; ls < nS; ls++) {
          s.stagingPrefixHost[r * nS + ls] = rows;
          rows += rank[r].totalsHost[d * nS + ls];
        }
        pairs += rank[r].totalsHost[nP + d];
      }
      s.stagingPrefixHost[nR * nS] = rows;
      s.rows = rows;
      s.pairs = pairs;
      s.recvX = s.recv.alloc((long) rows * rb);
      s.recvScales = sc > 0 ? s.recv.alloc(4L * rows * sc) : 0L;
      s.recvW = s.recv.alloc(4L * rows);
      s.pairSrc = s.recv.alloc(4L * pairs);
      s.pairHome = s.recv.alloc(4L * pairs);
      s.pairToken = s.recv.alloc(4L * pairs);
      s.pairRows = s.recv.alloc(4L * pairs * nK);
      s.recvCounts = s.recv.alloc(4L * nR * nS);
      s.slotTotal = s.recv.alloc(4L * nS);
      s.rowBase = s.recv.alloc(4L * nR * nS);
      s.slotBase = s.recv.alloc(4L * (nS + 1));
      s.pairBase = s.recv.alloc(4L * (nR + 1));
      s.stagingPrefix = s.recv.alloc(4L * (nR * nS + 1));
    }
    long totalsPtrs = tableOf(s -> s.totals);
    for (int d = 0; d < nR; d++) {
      Rank s = rank[d];
      NativeKernels.recvOffsets(totalsPtrs, d, nR, nS, nP, s.recvCounts, s.slotTotal, s.rowBase,
          s.slotBase, s.pairBase, s.stagingPrefix, streams[d]);
      NativeKernels.eventRecord(evStage[d], streams[d]);
    }
    // Host-side work (pointer tables: a cudaMalloc and a synchronous upload each; the unfused
    // path's buffers) happens before the clock starts, or the GPU would sit at evStart waiting
    // for the host and the dispatch would be charged for it.
    long recvX = 0, recvScales = 0, recvW = 0, rowBase = 0, pairBase = 0, pairSrc = 0, pairHome = 0, pairToken = 0, pairRows = 0;
    if (v == Variant.FUSED) {
      recvX = tableOf(s -> s.recvX);
      recvScales = tableOf(s -> s.recvScales);
      recvW = tableOf(s -> s.recvW);
      rowBase = tableOf(s -> s.rowBase);
      pairBase = tableOf(s -> s.pairBase);
      pairSrc = tableOf(s -> s.pairSrc);
      pairHome = tableOf(s -> s.pairHome);
      pairToken = tableOf(s -> s.pairToken);
      pairRows = tableOf(s -> s.pairRows);
    } else {
      for (int r = 0; r < nR; r++) {
        Rank s = rank[r];
        int sels = s.slotPrefixHost[nP];
        s.permX = s.recv.alloc((long) sels * rb);
        s.permScales = sc > 0 ? s.recv.alloc(4L * sels * sc) : 0L;
        s.permW = s.recv.alloc(4L * sels);
        // rank r as a destination: staging of [src rank][local slot] blocks, then sort chunks
        s.stagingX = s.recv.alloc((long) s.rows * rb);
        s.stagingScales = sc > 0 ? s.recv.alloc(4L * s.rows * sc) : 0L;
        s.stagingW = s.recv.alloc(4L * s.rows);
      }
    }
    // Every rank's offsets are known once evStart fires: all streams start the data phase there.
    startClock(evStage);
    if (v == Variant.FUSED) {
      for (int r = 0; r < nR; r++) {
        Rank s = rank[r];
        NativeKernels.dispatchFused(s.x, s.scales, sc, s.topkW, s.slotIds, s.pos, s.pairPos,
            s.pairIdx, s.t, nK, nS, nR, r, rb, recvX, recvScales, recvW, rowBase, pairBase,
            pairSrc, pairHome, pairToken, pairRows, streams[r], kernels);
        NativeKernels.eventRecord(evSend[r], streams[r]);
      }
    } else {
      for (int r = 0; r < nR; r++) {
        Rank s = rank[r];
        long st = streams[r];
        NativeKernels.permute(s.x, s.scales, sc, s.topkW, s.slotIds, s.pos, s.slotPrefix, s.t, nK,
            rb, s.permX, s.permScales, s.permW, st);
        // per-peer copies, rotated order (r+1, r+2, ..., r): traffic dispersion (shuffle-engine/docs/data-path.md)
        for (int i = 1; i <= nR; i++) {
          int d = (r + i) % nR;
          Rank dst = rank[d];
          int from = s.slotPrefixHost[d * nS];
          int n = s.slotPrefixHost[(d + 1) * nS] - from;
          int to = dst.stagingPrefixHost[r * nS];
          NativeKernels.copyDeviceToDeviceAsync(
              dst.stagingX + (long) to * rb, s.permX + (long) from * rb, (long) n * rb, st);
          NativeKernels.copyDeviceToDeviceAsync(
              dst.stagingW + 4L * to, s.permW + 4L * from, 4L * n, st);
          if (sc > 0) {
            NativeKernels.copyDeviceToDeviceAsync(dst.stagingScales + 4L * to * sc,
                s.permScales + 4L * from * sc, 4L * n * sc, st);
          }
        }
        NativeKernels.eventRecord(evSend[r], st);
      }
    }
    for (int d = 0; d < nR; d++) {
      for (int r = 0; r < nR; r++) {
        NativeKernels.streamWaitEvent(streams[d], evSend[r]);
      }
      if (v == Variant.UNFUSED) {
        Rank s = rank[d];
        NativeKernels.sortChunks(s.stagingX, s.stagingScales, s.stagingW, s.stagingPrefix,
            s.rowBase, nR, nS, s.rows, rb, sc, s.recvX, s.recvScales, s.recvW, streams[d]);
      }
      NativeKernels.eventRecord(evDone[d], streams[d]);
    }
    stopClock();
    dispatched = true;
    lastDispatch = v;
  }

  private DispatchResult[] downloadDispatch() {
    DispatchResult[] out = new DispatchResult[nR];
    int sc = shape.scaleCols();
    for (int d = 0; d < nR; d++) {
      Rank s = rank[d];
      byte[] x = new byte[Math.toIntExact((long) s.rows * shape.rowBytes())];
      NativeKernels.bytesFromDevice(s.recvX, x, 0, x.length);
      float[] scales = new float[s.rows * sc];
      if (sc > 0) {
        NativeKernels.floatsFromDevice(s.recvScales, scales, 0, scales.length);
      }
      float[] w = new float[s.rows];
      NativeKernels.floatsFromDevice(s.recvW, w, 0, w.length);
      int[] counts = new int[nS];
      NativeKernels.intsFromDevice(s.slotTotal, counts, 0, nS);
      // Pair records (the fused combine's handle) exist only after a fused dispatch.
      boolean fused = lastDispatch == Variant.FUSED;
      int[] src = new int[fused ? s.pairs : 0];
      int[] tok = new int[fused ? s.pairs : 0];
      NativeKernels.intsFromDevice(s.pairSrc, src, 0, src.length);
      NativeKernels.intsFromDevice(s.pairToken, tok, 0, tok.length);
      int[] perRank = Arrays.copyOfRange(s.totalsHost, nP, nP + nR);
      byte[] inRank = new byte[s.t * nR];
      NativeKernels.bytesFromDevice(s.inRank, inRank, 0, inRank.length);
      out[d] = new DispatchResult(s.rows, x, scales, w, counts, s.pairs, src, tok, perRank, inRank);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // combine
  // ------------------------------------------------------------------------------------------

  private void enqueueCombine(Variant v) {
    checkOpen();
    awaitPending();
    if (!dispatched) {
      throw new IllegalStateException("dispatch first");
    }
    if (v == Variant.FUSED && lastDispatch != Variant.FUSED) {
      throw new IllegalStateException(
          "the fused combine needs the pair records of a fused dispatch; run dispatch(FUSED)");
    }
    for (int d = 0; d < nR; d++) {
      if (!rank[d].hasY) {
        throw new IllegalStateException("rank " + d + " has no expert outputs: setExpertOutputs first");
      }
    }
    t0 = System.nanoTime();
    int cb = shape.combineRowBytes();
    int dt = shape.combineCode();
    for (int r = 0; r < nR; r++) {
      Rank s = rank[r];
      s.comb.close();
      int homePairs = 0;
      for (int d = 0; d < nR; d++) {
        homePairs += s.totalsHost[nP + d];
      }
      s.partials = s.comb.alloc((long) homePairs * cb);
      s.out = s.comb.alloc((long) s.t * cb);
      if (v == Variant.UNFUSED) {
        s.returnY = s.comb.alloc((long) s.slotPrefixHost[nP] * cb);
        s.stagingY = s.comb.alloc((long) s.rows * cb);
      }
    }
    long partialPtrs = v == Variant.FUSED ? tableOf(s -> s.partials) : 0L;
    startClock(null);
    if (v == Variant.FUSED) {
      for (int d = 0; d < nR; d++) {
        Rank s = rank[d];
        NativeKernels.combineFused(dt, s.y, s.recvW, s.pairSrc, s.pairHome, s.pairRows, s.pairs,
            nK, nH, partialPtrs, streams[d], kernels);
        NativeKernels.eventRecord(evSend[d], streams[d]);
      }
      for (int r = 0; r < nR; r++) {
        Rank s = rank[r];
        for (int d = 0; d < nR; d++) {
          NativeKernels.streamWaitEvent(streams[r], evSend[d]);
        }
        NativeKernels.combineHome(dt, s.partials, s.pairOffset, s.t, nH, s.out, streams[r], kernels);
        NativeKernels.eventRecord(evDone[r], streams[r]);
      }
    } else {
      for (int d = 0; d < nR; d++) {
        Rank s = rank[d];
        long st = streams[d];
        NativeKernels.sortChunksBack(s.y, s.stagingPrefix, s.rowBase, nR, nS, s.rows, cb,
            s.stagingY, st);
        for (int i = 1; i <= nR; i++) {
          int r = (d + i) % nR;
          Rank home = rank[r];
          int to = home.slotPrefixHost[d * nS];
          int n = home.slotPrefixHost[(d + 1) * nS] - to;
          int from = s.stagingPrefixHost[r * nS];
          NativeKernels.copyDeviceToDeviceAsync(
              home.returnY + (long) to * cb, s.stagingY + (long) from * cb, (long) n * cb, st);
        }
        NativeKernels.eventRecord(evSend[d], st);
      }
      for (int r = 0; r < nR; r++) {
        Rank s = rank[r];
        for (int d = 0; d < nR; d++) {
          NativeKernels.streamWaitEvent(streams[r], evSend[d]);
        }
        NativeKernels.unpermute(dt, s.returnY, s.topkW, s.slotIds, s.pos, s.slotPrefix, s.t, nK,
            nS, nH, s.out, streams[r]);
        NativeKernels.eventRecord(evDone[r], streams[r]);
      }
    }
    stopClock();
  }

  private byte[][] downloadCombine() {
    byte[][] out = new byte[nR][];
    for (int r = 0; r < nR; r++) {
      Rank s = rank[r];
      out[r] = new byte[Math.toIntExact((long) s.t * shape.combineRowBytes())];
      NativeKernels.bytesFromDevice(s.out, out[r], 0, out[r].length);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------

  private <T> T finish(Supplier<T> download) {
    for (int r = 0; r < nR; r++) {
      NativeKernels.eventSynchronize(evDone[r]);
    }
    NativeKernels.eventSynchronize(evEnd);
    lastNanos = System.nanoTime() - t0;
    lastDeviceMs = NativeKernels.eventElapsedMs(evStart, evEnd);
    for (int r = 0; r < nR; r++) {
      NativeKernels.streamSynchronize(streams[r]);
    }
    global.releaseTables();
    return download.get();
  }

  private interface PtrOf {
    long of(Rank s);
  }

  /** Device array of R pointers (one per rank), freed after the operation completes. */
  private long tableOf(PtrOf f) {
    long[] p = new long[nR];
    for (int r = 0; r < nR; r++) {
      p[r] = f.of(rank[r]);
    }
    return global.table(p);
  }

  private void checkOpen() {
    if (closed) {
      throw new IllegalStateException("backend closed");
    }
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    awaitPending();
    closed = true;
    waiter.shutdownNow();
    // Every release is attempted even after one fails (a sticky CUDA error makes all of them
    // fail): the first failure is thrown, the others ride along as suppressed.
    RuntimeException err = null;
    for (int r = 0; r < nR; r++) {
      long st = streams[r];
      if (st != 0) err = attempt(err, () -> NativeKernels.streamSynchronize(st));
    }
    for (Rank s : rank) {
      if (s != null) {
        err = attempt(err, s.comb::close);
        err = attempt(err, s.recv::close);
        err = attempt(err, s.in::close);
      }
    }
    err = attempt(err, global::close);
    for (int r = 0; r < nR; r++) {
      int i = r;
      err = attempt(err, () -> NativeKernels.eventDestroy(evStage[i]));
      if (r == 0) {
        err = attempt(err, () -> NativeKernels.eventDestroy(evStart));
        err = attempt(err, () -> NativeKernels.eventDestroy(evEnd));
      }
      err = attempt(err, () -> NativeKernels.eventDestroy(evSend[i]));
      err = attempt(err, () -> NativeKernels.eventDestroy(evDone[i]));
      err = attempt(err, () -> NativeKernels.streamDestroy(streams[i]));
    }
    if (err != null) throw err;
  }

  private static RuntimeException attempt(RuntimeException first, Runnable release) {
    try {
      release.run();
      return first;
    } catch (RuntimeException e) {
      if (first == null) return e;
      first.addSuppressed(e);
      return first;
    }
  }

  /** Per-rank device state; every pointer belongs to one of its arenas. */
  private static final class Rank {
    final Arena in = new Arena();
    final Arena recv = new Arena();
    final Arena comb = new Arena();
    boolean uploaded;
    boolean hasY;
    int t;
    long x;
    long scales;
    long topkIdx;
    long topkW;
    long slotIds;
    long pos;
    long pairPos;
    long pairIdx;
    long inRank;
    long pairOffset;
    long chunkCounts;
    long chunkBase;
    long totals;
    long slotPrefix;
    long chunkPairBase;
    int[] totalsHost;
    int[] slotPrefixHost;
    int[] stagingPrefixHost;
    int rows;
    int pairs;
    long recvX;
    long recvScales;
    long recvW;
    long pairSrc;
    long pairHome;
    long pairToken;
    long pairRows;
    long recvCounts;
    long slotTotal;
    long rowBase;
    long slotBase;
    long pairBase;
    long stagingPrefix;
    long permX;
    long permScales;
    long permW;
    long stagingX;
    long stagingScales;
    long stagingW;
    long y;
    long partials;
    long out;
    long stagingY;
    long returnY;
  }

  /** Device allocations released together (the native library owns them; this only tracks). */
  private static final class Arena {
    private final List<Long> ptrs = new ArrayList<>();
    private final List<Long> tables = new ArrayList<>();

    long alloc(long bytes) {
      long p = NativeKernels.malloc(bytes);
      ptrs.add(p);
      return p;
    }

    long bytes(byte[] a) {
      long p = alloc(a.length);
      NativeKernels.bytesToDevice(a, 0, a.length, p);
      return p;
    }

    long ints(int[] a) {
      long p = alloc(4L * a.length);
      NativeKernels.intsToDevice(a, 0, a.length, p);
      return p;
    }

    long floats(float[] a) {
      long p = alloc(4L * a.length);
      NativeKernels.floatsToDevice(a, 0, a.length, p);
      return p;
    }

    long table(long[] a) {
      long p = NativeKernels.malloc(8L * a.length);
      tables.add(p);
      NativeKernels.longsToDevice(a, 0, a.length, p);
      return p;
    }

    void release(long p) {
      if (ptrs.remove(Long.valueOf(p))) {
        NativeKernels.free(p);
      }
    }

    void releaseTables() {
      for (long p : tables) {
        NativeKernels.free(p);
      }
      tables.clear();
    }

    void close() {
      releaseTables();
      for (long p : ptrs) {
        NativeKernels.free(p);
      }
      ptrs.clear();
    }
  }
}
