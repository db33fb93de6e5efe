package io.moeyard.cuda;

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
 * <p>Ownership: {@link #create} builds a communicator of its own ({@code ncclCommInitRank}, which
 * returns once every rank of the world has called it with the same unique id, see
 * {@link NcclUniqueIds#exchange}) and destroys it in {@link #close()}; {@link #wrap} uses an
 * engine's {@code ncclComm_t} and never destroys it. Device addresses and streams are this
 * module's or the engine's (same device, same primary context).
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
    long commInitRank(byte[] uniqueId, int ranks, int rank);

    int commCount(long comm);

    void commDestroy(long comm);

    void groupStart();

    void groupEnd();

    void send(long address, long bytes, int peer, long comm, long stream);

    void recv(long address, long bytes, int peer, long comm, long stream);
  }

  private final Nccl nccl;
  private final long comm;
  private final int ranks;
  private final int rank;
  private final boolean owned;
  private boolean closed;

  private NcclChannel(Nccl nccl, long comm, int ranks, int rank, boolean owned) {
    this.nccl = nccl;
    this.comm = comm;
    this.ranks = ranks;
    this.rank = rank;
    this.owned = owned;
  }

  /**
   * A communicator of its own for rank {@code rank} of {@code ranks}, from the world's unique id
   * (every rank calls this with the same id; returns once all have).
   */
  public static NcclChannel create(byte[] uniqueId, int ranks, int rank) {
    checkPlace(uniqueId, ranks, rank);
    return create(uniqueId, ranks, rank, NcclAvailability.get().channelCalls());
  }

  static NcclChannel create(byte[] uniqueId, int ranks, int rank, Nccl nccl) {
    checkPlace(uniqueId, ranks, rank);
    return new NcclChannel(nccl, nccl.commInitRank(uniqueId, ranks, rank), ranks, rank, true);
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
    return new NcclChannel(nccl, ncclComm, ranks, rank, false);
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
   * stream orders what follows. Bad arguments throw before any NCCL call, naming the entry.
   */
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
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
    if (failed != null) throw failed;
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

  /** Destroys the communicator when this channel built it; an engine's stays open. Idempotent. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    if (owned) nccl.commDestroy(comm);
  }
}
