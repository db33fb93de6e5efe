package io.moeyard.engine.transport;

import io.moeyard.engine.CollectiveException;
import java.lang.foreign.MemorySegment;

/**
 * The grouped send/receive of {@link Transport#sendRecv} on transports whose ranks can read each
 * other's peer memory (threads of one JVM, processes mapping each other's files): every rank
 * posts, per peer, the segment it sends and the bytes it expects back (one all-gather, which is
 * also the barrier that publishes the senders' packed bytes); every rank checks every
 * sender/receiver pair against the other side's count, so a mismatch fails every rank alike
 * before a byte is copied; each receiver then copies what its peers posted into its own buffers.
 * A receiver copies before it enters its next collective call, so once that call returns on the
 * sender every copy of the round is done: the sender's buffers are free again from then on (the
 * contract of {@link Transport#sendRecv}), without a barrier of its own.
 * Each message is still one packed copy from the sender's buffer into the receiver's, the shape
 * an NCCL transport replaces with grouped {@code ncclSend}/{@code ncclRecv}.
 */
final class PointToPoint {
  private final Transport t;
  /**
   * This rank's posts, two that alternate between rounds: on ranks of one JVM peers read the post
   * itself after the all-gather, and a peer still in round g (copying out) has not reached round
   * g + 1's all-gather, so this rank may fill round g + 1's post but not round g's again.
   */
  private final Posted[] posts;
  private int round;

  /** The scratch of {@code t}'s rounds, sized for its world here; the transport owns it. */
  PointToPoint(Transport t) {
    this.t = t;
    int ranks = t.size();
    this.posts = new Posted[] {
        new Posted(new MemorySegment[ranks], new long[ranks], new long[ranks]),
        new Posted(new MemorySegment[ranks], new long[ranks], new long[ranks])};
  }

  /** One rank's side of a round: what it sends each peer, and how many bytes it expects from each. */
  record Posted(MemorySegment[] send, long[] sendBytes, long[] recvBytes) {}

  static final MessageCodec<Posted> CODEC = new MessageCodec<>() {
    @Override
    public void write(Posted p, MessageWriter out) {
      out.putLongs(p.sendBytes).putLongs(p.recvBytes);
      for (int q = 0; q < p.send.length; q++) out.putSegment(p.sendBytes[q] > 0 ? p.send[q] : null);
    }

    @Override
    public Posted read(MessageReader in) {
      long[] sendBytes = in.getLongs();
      long[] recvBytes = in.getLongs();
      MemorySegment[] send = new MemorySegment[sendBytes.length];
      for (int q = 0; q < send.length; q++) send[q] = in.getSegment();
      return new Posted(send, sendBytes, recvBytes);
    }
  };

  /** A round with scratch of its own, for transports that keep none ({@link Transport#sendRecv}'s default). */
  static void run(Transport t, MemorySegment[] send, MemorySegment[] recv) {
    new PointToPoint(t).run(send, recv);
  }

  /** One round of {@link Transport#sendRecv}; allocates nothing on ranks of one JVM but the all-gather's array. */
  void run(MemorySegment[] send, MemorySegment[] recv) {
    int ranks = t.size();
    int me = t.rank();
    if (send.length != ranks || recv.length != ranks) {
      throw new IllegalArgumentException("sendRecv needs one send and one receive segment per rank (" + ranks + "), got "
          + send.length + " and " + recv.length);
    }
    Posted mine = posts[round++ & 1];
    long[] sendBytes = mine.sendBytes;
    long[] recvBytes = mine.recvBytes;
    for (int q = 0; q < ranks; q++) {
      mine.send[q] = send[q];
      sendBytes[q] = send[q] == null ? 0 : send[q].byteSize();
      recvBytes[q] = recv[q] == null ? 0 : recv[q].byteSize();
    }
    Object[] got = t.allGather(mine, CODEC);
    for (int p = 0; p < ranks; p++) {
      Posted from = (Posted) got[p];
      for (int q = 0; q < ranks; q++) {
        long expected = ((Posted) got[q]).recvBytes[p];
        if (from.sendBytes[q] != expected) {
          throw new CollectiveException("sendRecv: rank " + p + " sends rank " + q + " " + from.sendBytes[q]
              + " bytes, rank " + q + " expects " + expected);
        }
      }
    }
    for (int p = 0; p < ranks; p++) {
      if (recvBytes[p] > 0) MemorySegment.copy(((Posted) got[p]).send[me], 0, recv[p], 0, recvBytes[p]);
    }
  }
}
