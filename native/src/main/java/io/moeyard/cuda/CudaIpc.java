package io.moeyard.cuda;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.transport.Transport;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * One device buffer (and optionally a few events) per process of a world, mapped into every other
 * process through CUDA IPC: how ranks that are processes on one node store into each other's
 * memory and wait for each other's work, as the virtual ranks of a {@link CudaWorld} do inside one
 * process. Each rank exports its buffer ({@code cudaIpcGetMemHandle}) and events
 * ({@code cudaIpcGetEventHandle}), the handles go round the process rendezvous (a
 * {@link ProcessWorld} or a process {@link Transport}), and each rank maps its peers' buffers
 * ({@code cudaIpcOpenMemHandle}) and opens their events; {@link #address(int)} is then rank r's
 * buffer as this process addresses it (its own buffer for its own rank), {@link #event(int, int)}
 * rank r's i-th event.
 *
 * <p>Every rank learns the same verdict: a rank that cannot export (CUDA or IPC unavailable there,
 * a bad address) or cannot map a peer's buffer or event makes every rank throw the same
 * {@link CudaException} naming it, after each rank has released what it had mapped; a rank that
 * never arrives fails the others by the rendezvous's timeout. Nothing waits longer than that.
 *
 * <p>Ownership: each caller owns the buffer and events it exports, and must pass the address
 * {@code cudaMalloc} returned (a {@link DeviceBuffer}'s), since a handle names a whole allocation,
 * and events made by {@code eventCreateInterprocess}; this object owns the mappings of the peers'
 * buffers and events and releases each once in {@link #close()}, which ends with a barrier so that
 * no rank frees its buffer or events while a peer still holds them. Close it before the world.
 * Buffers live on device 0, the device the rest of this module uses.
 */
public final class CudaIpc implements AutoCloseable {

  /** Prefix of every unavailable message. */
  public static final String UNAVAILABLE = "CUDA IPC unavailable: ";

  /**
   * Whether this process can export device buffers through CUDA IPC, and if not, why: the CUDA
   * backend's own reason (no library, no driver, no device), or IPC unsupported on device 0.
   */
  public record Availability(boolean available, String reason) {
    /** "CUDA IPC available" or "CUDA IPC unavailable: &lt;reason&gt;". */
    public String message() {
      return available ? "CUDA IPC available" : UNAVAILABLE + reason;
    }

    /** Throws {@link CudaUnavailableException} with {@link #message()} unless available. */
    public void require() {
      if (!available) throw new CudaUnavailableException(message());
    }
  }

  private static Availability cached;

  /** The probe result, computed on first use; never throws. */
  public static synchronized Availability availability() {
    if (cached == null) cached = probe();
    return cached;
  }

  private static Availability probe() {
    CudaAvailability cuda = CudaAvailability.get();
    if (!cuda.available()) return new Availability(false, cuda.reason());
    try {
      NativeKernels.setDevice(0);
      String why = NativeKernels.ipcProbe();
      return why == null ? new Availability(true, null) : new Availability(false, why);
    } catch (RuntimeException | LinkageError e) {
      return new Availability(false, "probe failed: " + e);
    }
  }

  /** The CUDA side of the exchange; host tests stand in for it. */
  interface Calls {
    Availability availability();

    int handleBytes();

    byte[] export(long address);

    long open(byte[] handle);

    void close(long address);

    int eventHandleBytes();

    byte[] exportEvent(long event);

    long openEvent(byte[] handle);

    void closeEvent(long event);
  }

  /** The rendezvous the handles go round: a {@link ProcessWorld}'s store or a process transport. */
  interface Exchange {
    int rank();

    int size();

    List<byte[]> allGather(byte[] mine);

    void barrier();

    static Exchange of(ProcessWorld w) {
      return new Exchange() {
        public int rank() {
          return w.rank();
        }

        public int size() {
          return w.size();
        }

        public List<byte[]> allGather(byte[] mine) {
          return w.allGather(mine);
        }

        public void barrier() {
          w.barrier();
        }
      };
    }

    static Exchange of(Transport t) {
      return new Exchange() {
        public int rank() {
          return t.rank();
        }

        public int size() {
          return t.size();
        }

        public List<byte[]> allGather(byte[] mine) {
          Object[] all = t.allGather(mine);
          List<byte[]> out = new java.util.ArrayList<>(all.length);
          for (Object o : all) out.add((byte[]) o);
          return out;
        }

        public void barrier() {
          t.barrier();
        }
      };
    }
  }

  private static final Calls CUDA = new Calls() {
    @Override
    public Availability availability() {
      return CudaIpc.availability();
    }

    @Override
    public int handleBytes() {
      return NativeKernels.ipcHandleBytes();
    }

    @Override
    public byte[] export(long address) {
      NativeKernels.setDevice(0);
      return NativeKernels.ipcGetMemHandle(address);
    }

    @Override
    public long open(byte[] handle) {
      return NativeKernels.ipcOpenMemHandle(handle);
    }

    @Override
    public void close(long address) {
      NativeKernels.ipcCloseMemHandle(address);
    }

    @Override
    public int eventHandleBytes() {
      return NativeKernels.ipcEventHandleBytes();
    }

    @Override
    public byte[] exportEvent(long event) {
      return NativeKernels.ipcGetEventHandle(event);
    }

    @Override
    public long openEvent(byte[] handle) {
      return NativeKernels.ipcOpenEventHandle(handle);
    }

    @Override
    public void closeEvent(long event) {
      NativeKernels.eventDestroy(event);
    }
  };

  private static final byte OK = 0;
  private static final byte FAILED = 1;

  private final Exchange world;
  private final Calls calls;
  private final long[] addresses;
  private final long[] bytes;
  /** [rank][i]: rank's i-th event as this process holds it (its own for its own rank). */
  private final long[][] events;
  private boolean closed;

  private CudaIpc(Exchange world, Calls calls, long[] addresses, long[] bytes, long[][] events) {
    this.world = world;
    this.calls = calls;
    this.addresses = addresses;
    this.bytes = bytes;
    this.events = events;
  }

  /** {@link #open(ProcessWorld, long, long)} of a buffer of one's own. */
  public static CudaIpc open(ProcessWorld world, DeviceBuffer buffer) {
    return open(world, buffer.address(), buffer.byteSize());
  }

  /**
   * Called by every rank of {@code world} with its own buffer ({@code bytes} at {@code address},
   * the start of a {@code cudaMalloc} allocation): returns once every rank has mapped every
   * peer's buffer, or throws the same {@link CudaException} on every rank.
   */
  public static CudaIpc open(ProcessWorld world, long address, long bytes) {
    return open(Exchange.of(world), address, bytes, new long[0], CUDA);
  }

  /**
   * As {@link #open(ProcessWorld, long, long)} over a process transport (every rank calls it, in
   * the same place of its collective order), sharing {@code events} too (each made by
   * {@code NativeKernels.eventCreateInterprocess}; every rank shares as many).
   */
  public static CudaIpc open(Transport transport, long address, long bytes, long[] events) {
    return open(Exchange.of(transport), address, bytes, events, null, CUDA);
  }

  /**
   * As {@link #open(Transport, long, long, long[])}, mapping only the peers {@code reach} marks (the
   * ranks of this machine; null: all): every rank still exports, and {@link #address} and
   * {@link #event} are 0 for the others.
   */
  public static CudaIpc open(Transport transport, long address, long bytes, long[] events, boolean[] reach) {
    return open(Exchange.of(transport), address, bytes, events, reach, CUDA);
  }

  static CudaIpc open(ProcessWorld world, long address, long bytes, Calls calls) {
    return open(Exchange.of(world), address, bytes, new long[0], null, calls);
  }

  static CudaIpc open(Exchange world, long address, long bytes, long[] events, Calls calls) {
    return open(world, address, bytes, events, null, calls);
  }

  static CudaIpc open(Exchange world, long address, long bytes, long[] events, boolean[] reach, Calls calls) {
    int me = world.rank();
    int n = world.size();
    int ne = events.length;
    // round 1: each rank's size and handles, or why it has none (so nobody is left waiting)
    byte[] mine;
    try {
      if (address == 0) throw new IllegalArgumentException("its buffer's address is 0");
      if (bytes <= 0) throw new IllegalArgumentException("its buffer has " + bytes + " bytes");
      calls.availability().require();
      byte[] handle = calls.export(address);
      if (handle == null || handle.length != calls.handleBytes()) {
        throw new IllegalStateException("its IPC handle has " + (handle == null ? "no" : handle.length)
            + " bytes, CUDA's have " + calls.handleBytes());
      }
      ByteBuffer b = ByteBuffer.allocate(1 + 8 + handle.length + 4 + ne * calls.eventHandleBytes())
          .order(ByteOrder.LITTLE_ENDIAN).put(OK).putLong(bytes).put(handle).putInt(ne);
      for (int i = 0; i < ne; i++) {
        if (events[i] == 0) throw new IllegalArgumentException("its event " + i + " is 0");
        byte[] h = calls.exportEvent(events[i]);
        if (h == null || h.length != calls.eventHandleBytes()) {
          throw new IllegalStateException("its IPC event handle has " + (h == null ? "no" : h.length)
              + " bytes, CUDA's have " + calls.eventHandleBytes());
        }
        b.put(h);
      }
      mine = b.array();
    } catch (RuntimeException e) {
      mine = said(FAILED, e.getMessage() == null ? e.toString() : e.getMessage());
    }
    List<byte[]> all = world.allGather(mine);
    long[] sizes = new long[n];
    byte[][] handles = new byte[n][];
    byte[][][] eventHandles = new byte[n][][];
    for (int r = 0; r < n; r++) {
      byte[] a = all.get(r);
      if (a.length == 0 || a[0] != OK) {
        String why = a.length == 0 ? "nothing" : new String(a, 1, a.length - 1, StandardCharsets.UTF_8);
        throw new VerdictException("rank " + r + " could not share its device buffer: " + why);
      }
      ByteBuffer b = ByteBuffer.wrap(a).order(ByteOrder.LITTLE_ENDIAN);
      b.get();
      sizes[r] = b.getLong();
      handles[r] = new byte[calls.handleBytes()];
      b.get(handles[r]);
      int theirs = b.getInt();
      if (theirs != ne) {
        throw new VerdictException("rank " + r + " shares " + theirs + " events, rank " + me + " " + ne);
      }
      eventHandles[r] = new byte[ne][calls.eventHandleBytes()];
      for (int i = 0; i < ne; i++) b.get(eventHandles[r][i]);
    }
    // round 2: map the peers' buffers and events; any rank's failure fails all, each releasing its own
    long[] addresses = new long[n];
    long[][] opened = new long[n][ne];
    String failure = null;
    for (int r = 0; r < n && failure == null; r++) {
      if (r == me || (reach != null && !reach[r])) continue;
      try {
        addresses[r] = calls.open(handles[r]);
        if (addresses[r] == 0) throw new CudaException("cudaIpcOpenMemHandle returned address 0");
      } catch (RuntimeException e) {
        failure = "rank " + me + " could not map rank " + r + "'s device buffer: " + e.getMessage();
      }
      for (int i = 0; i < ne && failure == null; i++) {
        try {
          opened[r][i] = calls.openEvent(eventHandles[r][i]);
          if (opened[r][i] == 0) throw new CudaException("cudaIpcOpenEventHandle returned no event");
        } catch (RuntimeException e) {
          failure = "rank " + me + " could not open rank " + r + "'s event " + i + ": " + e.getMessage();
        }
      }
    }
    List<byte[]> verdicts;
    try {
      verdicts = world.allGather(failure == null ? new byte[0] : failure.getBytes(StandardCharsets.UTF_8));
    } catch (RuntimeException e) {
      throw releasing(calls, addresses, opened, me, e);
    }
    for (byte[] v : verdicts) {
      if (v.length > 0) {
        RuntimeException e = releasing(calls, addresses, opened, me, new VerdictException(new String(v, StandardCharsets.UTF_8)));
        // no rank returns (and frees its buffer) before every peer has unmapped it
        try {
          world.allGather(new byte[0]);
        } catch (RuntimeException b) {
          e.addSuppressed(b);
        }
        throw e;
      }
    }
    addresses[me] = address;
    opened[me] = events.clone();
    return new CudaIpc(world, calls, addresses, sizes, opened);
  }

  private static byte[] said(byte tag, String text) {
    byte[] t = text.getBytes(StandardCharsets.UTF_8);
    byte[] a = new byte[t.length + 1];
    a[0] = tag;
    System.arraycopy(t, 0, a, 1, t.length);
    return a;
  }

  /** {@code e}, after releasing the peers' mappings (a failure to release is added to it as suppressed). */
  private static RuntimeException releasing(Calls calls, long[] addresses, long[][] events, int me, RuntimeException e) {
    try {
      release(calls, addresses, events, me);
    } catch (RuntimeException u) {
      e.addSuppressed(u);
    }
    return e;
  }

  /**
   * Closes every peer event and unmaps every peer buffer (never {@code me}'s own); the first
   * failure is rethrown after all.
   */
  private static void release(Calls calls, long[] addresses, long[][] events, int me) {
    RuntimeException first = null;
    for (int r = 0; r < addresses.length; r++) {
      if (r == me) continue;
      for (int i = 0; i < events[r].length; i++) {
        if (events[r][i] == 0) continue;
        try {
          calls.closeEvent(events[r][i]);
        } catch (RuntimeException e) {
          if (first == null) first = e;
        }
        events[r][i] = 0;
      }
      if (addresses[r] == 0) continue;
      try {
        calls.close(addresses[r]);
      } catch (RuntimeException e) {
        if (first == null) first = e;
      }
      addresses[r] = 0;
    }
    if (first != null) throw first;
  }

  public int rank() {
    return world.rank();
  }

  public int size() {
    return addresses.length;
  }

  /** Rank {@code r}'s buffer as this process addresses it (for this rank: its own buffer). */
  public long address(int r) {
    if (closed) throw new IllegalStateException("CUDA IPC mappings closed");
    return addresses[r];
  }

  /** Rank {@code r}'s event {@code i} as this process holds it (for this rank: its own event). */
  public long event(int r, int i) {
    if (closed) throw new IllegalStateException("CUDA IPC mappings closed");
    return events[r][i];
  }

  /** The size rank {@code r} announced for its buffer. */
  public long bytes(int r) {
    return bytes[r];
  }

  /**
   * Unmaps the peers' buffers, then waits for every rank to have done so (a barrier, bounded by the
   * rendezvous's timeout), so that each may free its own buffer afterwards. Idempotent.
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    RuntimeException unmap = null;
    try {
      release(calls, addresses, events, world.rank());
    } catch (RuntimeException e) {
      unmap = e;
    }
    try {
      world.barrier();
    } catch (RuntimeException e) {
      if (unmap != null) e.addSuppressed(unmap);
      throw e;
    }
    if (unmap != null) throw unmap;
  }
}
