package io.moeyard.cuda;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A {@link DeviceChannel} through host memory and the host transport: each message is copied to
 * the host, crosses in the transport's grouped send/receive ({@link Transport#sendRecv}), and is
 * copied into the receiver's device buffer. Slow (two copies over PCIe and the host transport's
 * own), but it needs nothing beyond the transport: the fallback between machines where NCCL is
 * not wanted, and how tests stand in for NCCL's leg on one GPU (NCCL refuses two ranks of one
 * communicator on the same device).
 *
 * <p>Its host buffers are sized once, at construction (a collective where they are the
 * transport's peer memory): per peer it may exchange with, {@code maxBytes} to send and as many
 * to receive. Owns them.
 */
final class HostStagedChannel implements DeviceChannel {

  /** The device side: a bounded wait for the caller's stream, and synchronous copies. */
  interface Device {
    void synchronize(long stream);

    void copy(long dst, long src, long bytes);
  }

  private final Transport transport;
  private final Device device;
  private final long maxBytes;
  private final PeerMemory peerMemory;
  private final Arena arena;
  private final MemorySegment[] sendArea;
  private final MemorySegment[] recvArea;
  private final MemorySegment[] send;
  private final MemorySegment[] recv;
  private boolean closed;

  /**
   * For the peers {@code peers} marks, {@code maxBytes} each way. Where the transport's peers read
   * a sender's memory (processes of one host) the send buffers are its peer memory, and making
   * them is a collective; otherwise plain memory of this process.
   */
  HostStagedChannel(Transport transport, Device device, boolean[] peers, long maxBytes) {
    this.transport = transport;
    this.device = device;
    this.maxBytes = maxBytes;
    int n = transport.size();
    this.sendArea = new MemorySegment[n];
    this.recvArea = new MemorySegment[n];
    this.send = new MemorySegment[n];
    this.recv = new MemorySegment[n];
    int count = 0;
    for (boolean p : peers) if (p) count++;
    long each = Math.max(64, (maxBytes + 63) & -64L);
    boolean shared = !transport.sharesAddressSpace() && transport.peerStores();
    this.peerMemory = shared ? transport.peerMemory(count * each + 64) : null;
    this.arena = Arena.ofShared();
    boolean ok = false;
    try {
      for (int q = 0; q < n; q++) {
        if (!peers[q]) continue;
        sendArea[q] = shared ? peerMemory.allocate(each, 64) : arena.allocate(each, 64);
        recvArea[q] = arena.allocate(each, 64);
      }
      ok = true;
    } finally {
      if (!ok) close();
    }
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    if (closed) throw new IllegalStateException("rank " + transport.rank() + ": the host-staged channel is closed");
    int n = transport.size();
    String problem = DeviceChannel.badSide("send", sendAddress, sendBytes, n);
    if (problem == null) problem = DeviceChannel.badSide("receive", recvAddress, recvBytes, n);
    for (int q = 0; q < n && problem == null; q++) {
      if ((sendBytes[q] > 0 && sendArea[q] == null) || (recvBytes[q] > 0 && recvArea[q] == null)) {
        problem = "rank " + q + " is not a peer of this host-staged channel";
      } else if (sendBytes[q] > maxBytes || recvBytes[q] > maxBytes) {
        problem = "a message of " + Math.max(sendBytes[q], recvBytes[q]) + " bytes to or from rank " + q + " exceeds the "
            + maxBytes + " the channel was sized for";
      }
    }
    // one verdict for all before anything moves (the transport's exchange has no room for one)
    for (Object v : transport.allGather(problem == null ? null : "rank " + transport.rank() + ": " + problem)) {
      if (v != null) throw new CollectiveException("device channel: " + v);
    }
    device.synchronize(stream); // what fills the messages is done
    for (int q = 0; q < n; q++) {
      send[q] = sendBytes[q] > 0 ? sendArea[q].asSlice(0, sendBytes[q]) : null;
      recv[q] = recvBytes[q] > 0 ? recvArea[q].asSlice(0, recvBytes[q]) : null;
      if (send[q] != null) device.copy(send[q].address(), sendAddress[q], sendBytes[q]);
    }
    transport.sendRecv(send, recv);
    for (int q = 0; q < n; q++) {
      if (recv[q] != null) device.copy(recvAddress[q], recv[q].address(), recvBytes[q]);
    }
  }

  @Override
  public void close() {
    if (closed) return;
    closed = true;
    arena.close();
    if (peerMemory != null) peerMemory.close();
  }
}
