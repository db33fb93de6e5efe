package io.moeyard.cuda;

import io.moeyard.engine.CollectiveTimeoutException;
import java.time.Duration;
import java.util.List;
import java.util.Objects;

/**
 * A point-to-point exchange between the ranks of an NCCL communicator: every rank gives, per peer,
 * the bytes it sends (a device address and a size) and where the bytes it receives go, and
 * {@link #exchange} enqueues all of them as one NCCL group ({@code ncclSend} / {@code ncclRecv}
 * between {@code ncclGroupStart} and {@code ncclGroupEnd}) on the caller's stream: the shape of the
 * node-level path's cross-node leg. A rank may send to itself.
 *
 * <p>Sizes must agree pairwise (what rank a sends to b is what b receives from a), which the
 * caller learns first (from a collective's announcements); NCCL cannot check it, and a size that
 * differs, or a peer that never calls, leaves the group waiting on the device. Empty entries are
 * skipped on both sides alike. Arguments are checked on the host before any NCCL call.
 *
 * <p>Ownership: {@link #create} builds a communicator of its own, complete once every rank of the
 * world has called it with the same unique id (see {@link NcclUniqueIds#exchange}), and destroys
 * it in {@link #close()}; {@link #wrap} uses an engine's {@code ncclComm_t} and never destroys it.
 * Device addresses and streams are this module's or the engine's (same device, same primary
 * context).
 *
 * <p>Nothing waits unbounded. A communicator made here is non-blocking
 * ({@code ncclCommInitRankConfig}, {@code blocking = 0}): its set-up, {@code ncclGroupEnd} and
 * {@code ncclCommFinalize} return at once and the channel polls {@code ncclCommGetAsyncError} until
 * they are done, for at most the channel's timeout; past it, or on an asynchronous error, it aborts
 * the communicator ({@code ncclCommAbort}) and throws ({@link CollectiveTimeoutException}, or
 * {@link CudaException} with NCCL's error), and the channel is closed. A peer that never calls
 * {@code create} is the usual cause; NCCL cannot say which peer it is, so callers that can
 * (a process world) pass a watch that looks at the world meanwhile and throws naming a rank that
 * died or gave up ({@code Transport.checkPeers}). An engine's communicator is polled alike when
 * it is non-blocking, and never aborted here: a failure closes the channel and leaves the
 * communicator to the engine.
 *
 * <p>Needs NCCL ({@link NcclAvailability}); without it {@code create} and {@code wrap} throw its
 * reason. The calls go through the binding the probe chose (libmoeyard_cuda.so's own dlopen of
 * libnccl.so.2, else the org.bytedeco bindings), and this class never links the bindings itself.
 * An engine's communicator must come from the same NCCL library the probe loaded (for
 * {@link NcclAvailability.Binding#MOEYARD}: {@link NcclAvailability#library()}).
 */
public final class NcclChannel implements AutoCloseable {

  /**
   * The NCCL calls the channel makes: {@link NcclNative#CHANNEL} or {@link NcclCalls#CHANNEL}, as
   * {@link NcclAvailability} chose; host tests stand in.
   */
  interface Nccl {
    /** Non-blocking: returns the communicator at once, its set-up going on ({@link #commReady}). */
    long commInitRank(byte[] uniqueId, int ranks, int rank);

    /** True once the communicator's last call is done, false while in progress; throws its error naming {@code call}. */
    boolean commReady(long comm, String call);

    /** Starts finishing the communicator's work ({@link #commReady} says when it is done). */
    void commFinalize(long comm);

    /** Frees the communicator at once, whatever it is doing. */
    void commAbort(long comm);

    int commCount(long comm);

    void commDestroy(long comm);

    void groupStart();

    void groupEnd();

    void send(long address, long bytes, int peer, long comm, long stream);

    void recv(long address, long bytes, int peer, long comm, long stream);
  }

  /** How long a channel waits for NCCL's set-up, a group's enqueue or its finalization, unless told. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);

  /** A watch that knows nothing. */
  static final Runnable NO_WATCH = () -> {};

  /** How often a wait looks at the watch: a system call or a socket read each time. */
  private static final long WATCH_NANOS = 20_000_000L;

  private final Nccl nccl;
  private final long comm;
  private final int ranks;
  private final int rank;
  private final boolean owned;
  private final long timeoutNanos;
  private boolean closed;
  /** The communicator was aborted after a failed wait: nothing of it is left to free. */
  private boolean aborted;

  private NcclChannel(Nccl nccl, long comm, int ranks, int rank, boolean owned, Duration timeout) {
    this.nccl = nccl;
    this.comm = comm;
    this.ranks = ranks;
    this.rank = rank;
    this.owned = owned;
    this.timeoutNanos = timeout.toNanos();
  }

  /**
   * A communicator of its own for rank {@code rank} of {@code ranks}, from the world's unique id
   * (every rank calls this with the same id; returns once all have, at most
   * {@link #DEFAULT_TIMEOUT} later).
   */
  public static NcclChannel create(byte[] uniqueId, int ranks, int rank) {
    return create(uniqueId, ranks, rank, DEFAULT_TIMEOUT);
  }

  /**
   * As {@link #create(byte[], int, int)}, each wait of the channel bounded by {@code timeout}:
   * the set-up (past it, the communicator is aborted and a {@link CollectiveTimeoutException}
   * thrown), every {@link #exchange}'s enqueue and the finalization in {@link #close()}.
   */
  public static NcclChannel create(byte[] uniqueId, int ranks, int rank, Duration timeout) {
    checkPlace(uniqueId, ranks, rank);
    checkTimeout(timeout);
    return create(uniqueId, ranks, rank, timeout, NO_WATCH, NcclAvailability.get().channelCalls());
  }

  static NcclChannel create(byte[] uniqueId, int ranks, int rank, Nccl nccl) {
    return create(uniqueId, ranks, rank, DEFAULT_TIMEOUT, NO_WATCH, nccl);
  }

  /**
   * With {@code watch} run now and then while the set-up is waited for: what it throws aborts the
   * communicator and is thrown (a process world's {@code Transport.checkPeers}).
   */
  static NcclChannel create(byte[] uniqueId, int ranks, int rank, Duration timeout, Runnable watch, Nccl nccl) {
    checkPlace(uniqueId, ranks, rank);
    checkTimeout(timeout);
    Objects.requireNonNull(watch, "watch");
    NcclChannel ch = new NcclChannel(nccl, nccl.commInitRank(uniqueId, ranks, rank), ranks, rank, true, timeout);
    ch.await("ncclCommInitRankConfig", watch);
    return ch;
  }

  /** An engine's communicator ({@code ncclComm_t} as an address), which it keeps owning. */
  public static NcclChannel wrap(long ncclComm, int ranks, int rank) {
    checkWrap(ncclComm, ranks, rank);
    return wrap(ncclComm, ranks, rank, NcclAvailability.get().channelCalls());
  }

  static NcclChannel wrap(long ncclComm, int ranks, int rank, Nccl nccl) {
    checkWrap(ncclComm, ranks, rank);
    int n = nccl.commCount(ncclComm);
    if (n != ranks) throw new IllegalArgumentException("the communicator has " + n + " ranks, not " + ranks);
    return new NcclChannel(nccl, ncclComm, ranks, rank, false, DEFAULT_TIMEOUT);
  }

  private static void checkTimeout(Duration timeout) {
    Objects.requireNonNull(timeout, "timeout");
    if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive, got " + timeout);
  }

  /**
   * Polls until the communicator's last call ({@code call}) is done. A failure (NCCL's error, the
   * timeout, or what {@code watch} throws) aborts an own communicator, closes the channel and is
   * thrown.
   */
  private void await(String call, Runnable watch) {
    try {
      // a blocking communicator (an engine's) is done at once: nothing allocated on that path
      if (nccl.commReady(comm, call)) return;
      HostWait.until(() -> nccl.commReady(comm, call), System.nanoTime() + timeoutNanos, WATCH_NANOS, watch,
          () -> new CollectiveTimeoutException("rank " + rank + " of " + ranks + ": " + call + " did not finish within "
              + timeoutNanos / 1_000_000 + " ms (a peer that never made its call, or NCCL stuck on its network; NCCL"
              + " cannot say which peer)" + (owned ? "; the communicator was aborted" : ""), List.of()));
    } catch (RuntimeException e) {
      fail(e);
      throw e;
    }
  }

  /** After a failed wait: an own communicator is aborted (what that throws is suppressed on {@code e}). */
  private void fail(RuntimeException e) {
    closed = true;
    try {
      abortOwn();
    } catch (RuntimeException a) {
      e.addSuppressed(a);
    }
  }

  /** Aborts the communicator when this channel built it, once. */
  private void abortOwn() {
    if (!owned || aborted) return;
    aborted = true;
    nccl.commAbort(comm);
  }

  private static void checkPlace(byte[] uniqueId, int ranks, int rank) {
    Objects.requireNonNull(uniqueId, "uniqueId");
    if (uniqueId.length != NcclUniqueIds.BYTES) {
      throw new IllegalArgumentException("the unique id has " + uniqueId.length + " bytes, NCCL's have " + NcclUniqueIds.BYTES);
    }
    checkRank(ranks, rank);
  }

  private static void checkWrap(long comm, int ranks, int rank) {
    if (comm == 0) throw new IllegalArgumentException("ncclComm is 0");
    checkRank(ranks, rank);
  }

  private static void checkRank(int ranks, int rank) {
    if (ranks < 1) throw new IllegalArgumentException("ranks must be >= 1, got " + ranks);
    if (rank < 0 || rank >= ranks) throw new IllegalArgumentException("rank " + rank + " outside [0, " + ranks + ")");
  }

  public int ranks() {
    return ranks;
  }

  public int rank() {
    return rank;
  }

  /**
   * Enqueues, as one NCCL group on {@code stream} (0: the default stream), for every peer p: a send
   * of {@code sendBytes[p]} bytes at {@code sendAddress[p]} and a receive of {@code recvBytes[p]}
   * bytes into {@code recvAddress[p]}; entries of 0 bytes are skipped. Returns once enqueued: the
   * stream orders what follows. Bad arguments throw before any NCCL call, naming the entry. A
   * non-blocking communicator's enqueue is waited for, at most the channel's timeout. A failed
   * enqueue closes the channel (an own communicator is aborted), as a failed wait does.
   */
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    exchange(sendAddress, sendBytes, recvAddress, recvBytes, stream, NO_WATCH);
  }

  /** {@link #exchange} with {@code watch} run now and then while the enqueue is waited for. */
  void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream, Runnable watch) {
    if (closed) throw new IllegalStateException("NCCL channel closed");
    checkSide("send", sendAddress, sendBytes);
    checkSide("receive", recvAddress, recvBytes);
    nccl.groupStart();
    RuntimeException failed = null;
    try {
      // peers from the next rank on, so that no rank is every sender's first peer
      for (int i = 0; i < ranks; i++) {
        int p = (rank + 1 + i) % ranks;
        if (sendBytes[p] > 0) nccl.send(sendAddress[p], sendBytes[p], p, comm, stream);
        if (recvBytes[p] > 0) nccl.recv(recvAddress[p], recvBytes[p], p, comm, stream);
      }
    } catch (RuntimeException e) {
      failed = e;
    } finally {
      // the group is always closed, also after a failed call (NCCL's group state is per thread)
      try {
        nccl.groupEnd();
      } catch (RuntimeException e) {
        if (failed == null) failed = e;
        else failed.addSuppressed(e);
      }
    }
    if (failed != null) {
      // NCCL leaves a non-blocking communicator of a failed group in that error (every later call
      // on it fails, its finalization too): an own one is aborted now, and the channel closed
      fail(failed);
      throw failed;
    }
    await("ncclGroupEnd", watch);
  }

  private void checkSide(String side, long[] address, long[] bytes) {
    Objects.requireNonNull(address, side + " addresses");
    Objects.requireNonNull(bytes, side + " sizes");
    if (address.length != ranks || bytes.length != ranks) {
      throw new IllegalArgumentException(side + ": " + address.length + " addresses and " + bytes.length
          + " sizes for " + ranks + " ranks");
    }
    for (int p = 0; p < ranks; p++) {
      if (bytes[p] < 0) throw new IllegalArgumentException(side + " bytes for rank " + p + " is " + bytes[p]);
      if (bytes[p] > 0 && address[p] == 0) {
        throw new IllegalArgumentException(side + " address for rank " + p + " is 0 (" + bytes[p] + " bytes)");
      }
    }
  }

  /**
   * Aborts the communicator this channel built ({@code ncclCommAbort}: no wait for peers, which
   * may be gone) and closes the channel; an engine's stays the engine's. For a world that failed,
   * instead of {@link #close()}. Idempotent.
   */
  void abort() {
    if (closed) return;
    closed = true;
    abortOwn();
  }

  /**
   * Finalizes and destroys the communicator when this channel built it (aborting it when the
   * finalization does not finish within the timeout); an engine's stays open. Idempotent.
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    if (!owned) return;
    try {
      nccl.commFinalize(comm);
      await("ncclCommFinalize", NO_WATCH);
    } catch (RuntimeException e) {
      fail(e);
      throw e;
    }
    nccl.commDestroy(comm);
  }
}
