package io.moeyard.cuda;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
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
 * <p>Between the rank processes of one machine the same exchange runs on CUDA IPC: the events
 * are interprocess ones ({@link #PeerCopyChannel(Transport, Device, boolean)}), and once the
 * communicator has mapped its peers' memory and opened their events it says how to reach them
 * ({@link #reach}); the posted addresses and events are then translated into this process's.
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

    /** An event other processes can wait for. */
    default long eventCreateShared() {
      return eventCreate();
    }
  }

  /**
   * Where a peer's posted values are, as this process addresses them: its send address, and its
   * two events (index 0: filled, 1: copied). Virtual ranks use the posted values themselves.
   */
  interface Peers {
    long address(int peer, long posted);

    long event(int peer, int which, long posted);
  }

  private static final Peers SAME_PROCESS = new Peers() {
    @Override
    public long address(int peer, long posted) {
      return posted;
    }

    @Override
    public long event(int peer, int which, long posted) {
      return posted;
    }
  };

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

    @Override
    public long eventCreateShared() {
      return NativeKernels.eventCreateInterprocess();
    }
  };

  private final Device cuda;
  private final Transport transport;
  private final int rank;
  private final int ranks;
  private long filled;
  private long copied;
  private Peers peers = SAME_PROCESS;

  /** What one rank posts: its verdict on its arguments, its messages, its expectations, its events. */
  private record Posted(String problem, long[] sendAddress, long[] sendBytes, long[] recvBytes, long filled, long copied) {}

  /** How {@link Posted} crosses a process boundary. */
  private static final MessageCodec<Posted> POSTED = new MessageCodec<>() {
    @Override
    public void write(Posted p, MessageWriter out) {
      out.putString(p.problem()).putLongs(p.sendAddress()).putLongs(p.sendBytes()).putLongs(p.recvBytes())
          .putLong(p.filled()).putLong(p.copied());
    }

    @Override
    public Posted read(MessageReader in) {
      return new Posted(in.getString(), in.getLongs(), in.getLongs(), in.getLongs(), in.getLong(), in.getLong());
    }
  };

  PeerCopyChannel(Transport transport) {
    this(transport, CUDA);
  }

  PeerCopyChannel(Transport transport, Device cuda) {
    this(transport, cuda, false);
  }

  /** With {@code shared}, its events are interprocess ones ({@link #events()}), for rank processes. */
  PeerCopyChannel(Transport transport, Device cuda, boolean shared) {
    this.cuda = cuda;
    this.transport = transport;
    this.rank = transport.rank();
    this.ranks = transport.size();
    this.filled = shared ? cuda.eventCreateShared() : cuda.eventCreate();
    try {
      this.copied = shared ? cuda.eventCreateShared() : cuda.eventCreate();
    } catch (RuntimeException e) {
      cuda.eventDestroy(filled);
      throw e;
    }
  }

  /** Its two events (filled, copied), for a communicator to share with its peer processes. */
  long[] events() {
    return new long[] {filled, copied};
  }

  /** Between processes: how to reach the peers' posted memory and events (set once, before the first exchange). */
  void reach(Peers p) {
    peers = java.util.Objects.requireNonNull(p, "peers");
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    if (filled == 0) throw new IllegalStateException("rank " + rank + ": the peer-copy channel is closed");
    String problem = DeviceChannel.badSide("send", sendAddress, sendBytes, ranks);
    if (problem == null) problem = DeviceChannel.badSide("receive", recvAddress, recvBytes, ranks);
    if (problem == null) cuda.eventRecord(filled, stream);
    Object[] all = transport.allGather(problem != null ? new Posted("rank " + rank + ": " + problem, null, null, null, 0, 0)
        : new Posted(null, sendAddress.clone(), sendBytes.clone(), recvBytes.clone(), filled, copied), POSTED);
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
      cuda.streamWaitEvent(stream, peers.event(q, 0, from.filled()));
      cuda.copy(recvAddress[q], peers.address(q, from.sendAddress()[rank]), recvBytes[q], stream);
    }
    cuda.eventRecord(copied, stream);
    transport.barrier(); // every receiver's event is recorded
    for (int q = 0; q < ranks; q++) {
      if (sendBytes[q] > 0) cuda.streamWaitEvent(stream, peers.event(q, 1, ((Posted) all[q]).copied()));
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
