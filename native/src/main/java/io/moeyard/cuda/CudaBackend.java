package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.ExpertMap;
import java.util.Arrays;
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
 * <p>Resources: device memory, streams and events are owned by the native library, allocated once
 * at open for the config's sizes (maxTokens per rank, receive rows) and released by {@link #close()};
 * a call allocates no device memory. One operation at a time per backend (not thread-safe); the async forms run the
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
   * @param x [T, H] raw element bytes in the config's dispatch dtype
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
  private final VirtualRanks ranks;
  private final Clock clock;
  private final ExecutorService waiter;
  /** Per rank, whether its input is on the device / its expert outputs for the last dispatch are. */
  private final boolean[] uploaded;
  private final boolean[] hasY;
  private boolean dispatched;
  private Variant lastDispatch;
  private boolean closed;
  private long t0;
  private long lastNanos;
  private float lastDeviceMs;

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
    this.uploaded = new boolean[shape.ranks()];
    this.hasY = new boolean[shape.ranks()];
    NativeKernels.setDevice(0);
    this.ranks = new VirtualRanks(shape, NativeKernels.limits()[3]); // cfg::kLayoutChunkTokens
    try {
      this.clock = new Clock(ranks);
    } catch (RuntimeException e) {
      RuntimeException err = ranks.destroyStreams(ranks.releaseMemory(null));
      if (err != null) {
        e.addSuppressed(err);
      }
      throw e;
    }
    this.waiter =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, "moeyard-cuda-waiter");
              t.setDaemon(true);
              return t;
            });
  }

  /**
   * Opens the backend on device 0 for {@code map} (its topology, slots and replicas) and the sizes
   * of {@code config}, allocating every buffer for them, or throws {@link CudaUnavailableException}
   * with the reason. A shape the kernels cannot take throws {@link IllegalArgumentException} naming
   * the value, before the device is touched. The config's variant is not used: each call names its own.
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

  /** Rows each rank's receive buffer holds. */
  public int receiveCapacity() {
    return shape.receiveRows();
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
   * part of the launch latency): the hold before each start event was too short.
   */
  public int shortHolds() {
    return clock.shortHolds();
  }

  /** Device-to-device copy of {@code bytes} on one stream, median of {@code iters} timed runs (ms): the roofline. */
  public float copyMillis(long bytes, int iters) {
    checkOpen();
    awaitPending();
    return clock.copyMillis(bytes, iters);
  }

  /** Uploads one rank's tokens (validated first; nothing is changed on bad input). */
  public void upload(int r, RankInput in) {
    checkOpen();
    awaitPending();
    Objects.checkIndex(r, shape.ranks());
    HostArrays.validate(shape, r, in);
    // the layout and receive buffers of the last dispatch are no longer this input's
    dispatched = false;
    HostArrays.upload(ranks, r, in);
    uploaded[r] = true;
  }

  /** Runs a dispatch on all ranks and returns each rank's output. */
  public DispatchResult[] dispatch(Variant v) {
    enqueueDispatch(v);
    return finish(this::dispatchResults);
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
    CompletableFuture<DispatchResult[]> f = CompletableFuture.supplyAsync(() -> finish(this::dispatchResults), waiter);
    pending = f;
    return f;
  }

  /** The last async operation, until the next operation has waited for it. */
  private CompletableFuture<?> pending;

  /**
   * One operation at a time: an operation started before the previous async one completed first
   * waits for it (the new one would reuse the buffers the previous one still reads or writes). Its
   * failure is reported by its own future, not here.
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
    Objects.checkIndex(d, shape.ranks());
    if (!dispatched) {
      throw new IllegalStateException("dispatch first: the expert outputs follow its row layout");
    }
    HostArrays.expertOutputs(ranks, d, y);
    hasY[d] = true;
  }

  /** Runs a combine on all ranks; returns each rank's [T, H] output in the combine dtype. */
  public byte[][] combine(Variant v) {
    enqueueCombine(v);
    return finish(() -> HostArrays.combineResults(ranks));
  }

  /** Runs a combine on all ranks and waits for it, without copying the outputs to the host (timing). */
  public void combineOnDevice(Variant v) {
    enqueueCombine(v);
    finish(() -> null);
  }

  public CompletableFuture<byte[][]> combineAsync(Variant v) {
    enqueueCombine(v);
    CompletableFuture<byte[][]> f = CompletableFuture.supplyAsync(() -> finish(() -> HostArrays.combineResults(ranks)), waiter);
    pending = f;
    return f;
  }

  private DispatchResult[] dispatchResults() {
    return HostArrays.dispatchResults(ranks, lastDispatch == Variant.FUSED);
  }

  private void enqueueDispatch(Variant v) {
    checkOpen();
    awaitPending();
    for (int r = 0; r < shape.ranks(); r++) {
      if (!uploaded[r]) {
        throw new IllegalStateException("rank " + r + " has no input: upload every rank first");
      }
    }
    t0 = System.nanoTime();
    // The layout overwrites the last dispatch's counts: until this one is enqueued, there is none.
    dispatched = false;
    Arrays.fill(hasY, false);
    LayoutPhase.run(ranks);
    if (v == Variant.FUSED) {
      FusedPath.dispatch(ranks, clock, kernels);
    } else {
      UnfusedPath.dispatch(ranks, clock);
    }
    dispatched = true;
    lastDispatch = v;
  }

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
    for (int d = 0; d < shape.ranks(); d++) {
      if (!hasY[d]) {
        throw new IllegalStateException("rank " + d + " has no expert outputs: setExpertOutputs first");
      }
    }
    t0 = System.nanoTime();
    if (v == Variant.FUSED) {
      FusedPath.combine(ranks, clock, kernels);
    } else {
      UnfusedPath.combine(ranks, clock);
    }
  }

  private <T> T finish(Supplier<T> download) {
    for (int r = 0; r < shape.ranks(); r++) {
      NativeKernels.eventSynchronize(ranks.evDone[r]);
    }
    clock.awaitEnd();
    lastNanos = System.nanoTime() - t0;
    lastDeviceMs = clock.elapsedMs();
    ranks.synchronize();
    return download.get();
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
    RuntimeException err = ranks.synchronizeAll(null);
    err = ranks.releaseMemory(err);
    err = clock.close(err);
    err = ranks.destroyStreams(err);
    if (err != null) throw err;
  }
}
