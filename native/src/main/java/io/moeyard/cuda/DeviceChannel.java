package io.moeyard.cuda;

/**
 * The node-level path's cross-node leg: a grouped point-to-point exchange of device memory, the
 * shape of grouped {@code ncclSend} / {@code ncclRecv}. Every rank calls {@link #exchange} at the
 * same point of a collective with, per peer p, the bytes it sends to p and where the bytes p sends
 * to it go (0 bytes: nothing); the exchange is enqueued on the caller's stream, after the work
 * already there (what fills the send buffers), and what the stream runs next sees every message
 * to this rank arrived. A send buffer may be refilled by work enqueued after the call returns.
 *
 * <p>Sizes come from the collective's announcements, so both ends know every message's size
 * before it moves. {@link PeerCopyChannel} (virtual ranks of one process) checks them pairwise on
 * every rank; {@link NcclDeviceChannel} (a multi-process, multi-node world) cannot, like NCCL.
 */
interface DeviceChannel extends AutoCloseable {

  void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream);

  /** Releases what the channel owns (events, a communicator it built). Idempotent. */
  @Override
  void close();

  /**
   * Instead of {@link #close()}, after the world failed (a closing barrier that did not confirm
   * the peers are done): frees only what no peer can still be using without asking them (an NCCL
   * communicator it built: aborted, since finishing it would wait for peers that are gone) and
   * leaves the rest (events and memory peers may map) to the process's exit. Idempotent.
   */
  default void abandon() {}

  /**
   * The first sender / receiver pair whose sizes differ ({@code sendBytes[a][b]} is what a sends to
   * b, {@code recvBytes[b][a]} what b expects from a), or null: the same verdict on every rank.
   */
  static String mismatch(long[][] sendBytes, long[][] recvBytes) {
    int n = sendBytes.length;
    for (int a = 0; a < n; a++) {
      for (int b = 0; b < n; b++) {
        if (sendBytes[a][b] != recvBytes[b][a]) {
          return "rank " + a + " sends " + sendBytes[a][b] + " bytes to rank " + b + ", which expects " + recvBytes[b][a];
        }
      }
    }
    return null;
  }

  /** What is wrong with one side's arguments (null: nothing), naming the entry. */
  static String badSide(String side, long[] address, long[] bytes, int ranks) {
    if (address == null || bytes == null) return side + ": null addresses or sizes";
    if (address.length != ranks || bytes.length != ranks) {
      return side + ": " + address.length + " addresses and " + bytes.length + " sizes for " + ranks + " ranks";
    }
    for (int p = 0; p < ranks; p++) {
      if (bytes[p] < 0) return side + " bytes for rank " + p + " is " + bytes[p];
      if (bytes[p] > 0 && address[p] == 0) return side + " address for rank " + p + " is 0 (" + bytes[p] + " bytes)";
    }
    return null;
  }
}
