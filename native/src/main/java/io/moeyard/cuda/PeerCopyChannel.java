package io.moeyard.cuda;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.transport.Transport;

/**
 * The {@link DeviceChannel} of virtual ranks in one process: every rank posts its messages (device
 * addresses and sizes) and an event recorded after what filled them; each receiver's stream waits
 * for its senders' events and copies its messages out of their memory ({@code cudaMemcpyAsync}
 * device to device), records an event of its own, and each sender's stream waits for the events of
 * the ranks it sent to, so that its send buffers are free in its stream order once the call
 * returns (as after an NCCL send). Two host meetings per exchange: the posting and the receivers'
 * events.
 *
 * <p>Owns its two events (created at construction, destroyed by {@link #close()}).
 */
final class PeerCopyChannel implements DeviceChannel {

  /** The CUDA calls the channel makes: {@link #CUDA}, or a stand-in in host tests. */
  interface Device {
    long eventCreate();

    void eventDestroy(long event);

    void eventRecord(long event, long stream);

    void streamWaitEvent(long stream, long event);

    void copy(long dst, long src, long bytes, long stream);
  }

  static final Device CUDA = new Device() {
    @Override
    public long eventCreate() {
      return NativeKernels.eventCreate(false);
    }

    @Override
    public void eventDestroy(long event) {
      NativeKernels.eventDestroy(event);
    }

    @Override
    public void eventRecord(long event, long stream) {
      NativeKernels.eventRecord(event, stream);
    }

    @Override
    public void streamWaitEvent(long stream, long event) {
      NativeKernels.streamWaitEvent(stream, event);
    }

    @Override
    public void copy(long dst, long src, long bytes, long stream) {
      NativeKernels.copyDeviceToDeviceAsync(dst, src, bytes, stream);
    }
  };

  private final Device cuda;
  private final Transport transport;
  private final int rank;
  private final int ranks;
  private long filled;
  private long copied;

  /** What one rank posts: its verdict on its arguments, its messages, its expectations, its events. */
  private record Posted(String problem, long[] sendAddress, long[] sendBytes, long[] recvBytes, long filled, long copied) {}

  PeerCopyChannel(Transport transport) {
    this(transport, CUDA);
  }

  PeerCopyChannel(Transport transport, Device cuda) {
    this.cuda = cuda;
    this.transport = transport;
    this.rank = transport.rank();
    this.ranks = transport.size();
    this.filled = cuda.eventCreate();
    try {
      this.copied = cuda.eventCreate();
    } catch (RuntimeException e) {
      cuda.eventDestroy(filled);
      throw e;
    }
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    if (filled == 0) throw new IllegalStateException("rank " + rank + ": the peer-copy channel is closed");
    String problem = DeviceChannel.badSide("send", sendAddress, sendBytes, ranks);
    if (problem == null) problem = DeviceChannel.badSide("receive", recvAddress, recvBytes, ranks);
    if (problem == null) cuda.eventRecord(filled, stream);
    Object[] all = transport.allGather(problem != null ? new Posted("rank " + rank + ": " + problem, null, null, null, 0, 0)
        : new Posted(null, sendAddress.clone(), sendBytes.clone(), recvBytes.clone(), filled, copied));
    long[][] sends = new long[ranks][];
    long[][] recvs = new long[ranks][];
    for (int q = 0; q < ranks; q++) {
      Posted p = (Posted) all[q];
      if (p.problem() != null) throw new CollectiveException("device channel: " + p.problem());
      sends[q] = p.sendBytes();
      recvs[q] = p.recvBytes();
    }
    String bad = DeviceChannel.mismatch(sends, recvs);
    if (bad != null) throw new CollectiveException("device channel: " + bad);
    // senders from the next rank on, so that no sender is every receiver's first
    for (int i = 0; i < ranks; i++) {
      int q = (rank + 1 + i) % ranks;
      if (recvBytes[q] == 0) continue;
      Posted from = (Posted) all[q];
      cuda.streamWaitEvent(stream, from.filled());
      cuda.copy(recvAddress[q], from.sendAddress()[rank], recvBytes[q], stream);
    }
    cuda.eventRecord(copied, stream);
    transport.barrier(); // every receiver's event is recorded
    for (int q = 0; q < ranks; q++) {
      if (sendBytes[q] > 0) cuda.streamWaitEvent(stream, ((Posted) all[q]).copied());
    }
  }

  @Override
  public void close() {
    long f = filled;
    long c = copied;
    filled = 0;
    copied = 0;
    RuntimeException err = null;
    if (f != 0) err = Release.attempt(err, () -> cuda.eventDestroy(f));
    if (c != 0) err = Release.attempt(err, () -> cuda.eventDestroy(c));
    if (err != null) throw err;
  }
}
