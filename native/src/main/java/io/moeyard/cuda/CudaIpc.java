package io.moeyard.cuda;

import io.moeyard.engine.rendezvous.ProcessWorld;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * One device buffer per process of a {@link ProcessWorld}, mapped into every other process through
 * CUDA IPC: how ranks that are processes on one node store into each other's memory, as the
 * virtual ranks of a {@link CudaWorld} do inside one process. Each rank exports its buffer
 * ({@code cudaIpcGetMemHandle}), the handles go round the process rendezvous, and each rank maps
 * its peers' buffers ({@code cudaIpcOpenMemHandle}); {@link #address(int)} is then rank r's buffer
 * as this process addresses it (its own buffer for its own rank).
 *
 * <p>Every rank learns the same verdict: a rank that cannot export (CUDA or IPC unavailable there,
 * a bad address) or cannot map a peer's buffer makes every rank throw the same {@link CudaException}
 * naming it, after each rank has released what it had mapped; a rank that never arrives fails the
 * others by the rendezvous's timeout. Nothing waits longer than that.
 *
 * <p>Ownership: each caller owns the buffer it exports, and must pass the address {@code cudaMalloc}
 * returned (a {@link DeviceBuffer}'s), since a handle names a whole allocation; this object owns the
 * mappings of the peers' buffers and releases each once in {@link #close()}, which ends with a
 * barrier so that no rank frees its buffer while a peer still maps it. Close it before the world.
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
  };

  private static final byte OK = 0;
  private static final byte FAILED = 1;

  private final ProcessWorld world;
  private final Calls calls;
  private final long[] addresses;
  private final long[] bytes;
  private boolean closed;

  private CudaIpc(ProcessWorld world, Calls calls, long[] addresses, long[] bytes) {
    this.world = world;
    this.calls = calls;
    this.addresses = addresses;
    this.bytes = bytes;
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
    return open(world, address, bytes, CUDA);
  }

  static CudaIpc open(ProcessWorld world, long address, long bytes, Calls calls) {
    int me = world.rank();
    int n = world.size();
    // round 1: each rank's size and handle, or why it has none (so nobody is left waiting)
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
      mine = ByteBuffer.allocate(1 + 8 + handle.length).order(ByteOrder.LITTLE_ENDIAN)
          .put(OK).putLong(bytes).put(handle).array();
    } catch (RuntimeException e) {
      mine = said(FAILED, e.getMessage() == null ? e.toString() : e.getMessage());
    }
    List<byte[]> all = world.allGather(mine);
    long[] sizes = new long[n];
    byte[][] handles = new byte[n][];
    for (int r = 0; r < n; r++) {
      byte[] a = all.get(r);
      if (a.length == 0 || a[0] != OK) {
        String why = a.length == 0 ? "nothing" : new String(a, 1, a.length - 1, StandardCharsets.UTF_8);
        throw new CudaException("rank " + r + " could not share its device buffer: " + why);
      }
      ByteBuffer b = ByteBuffer.wrap(a).order(ByteOrder.LITTLE_ENDIAN);
      b.get();
      sizes[r] = b.getLong();
      handles[r] = Arrays.copyOfRange(a, 9, a.length);
    }
    // round 2: map the peers' buffers; any rank's failure fails all, each releasing its own mappings
    long[] addresses = new long[n];
    String failure = null;
    for (int r = 0; r < n && failure == null; r++) {
      if (r == me) continue;
      try {
        addresses[r] = calls.open(handles[r]);
        if (addresses[r] == 0) throw new CudaException("cudaIpcOpenMemHandle returned address 0");
      } catch (RuntimeException e) {
        failure = "rank " + me + " could not map rank " + r + "'s device buffer: " + e.getMessage();
      }
    }
    List<byte[]> verdicts;
    try {
      verdicts = world.allGather(failure == null ? new byte[0] : failure.getBytes(StandardCharsets.UTF_8));
    } catch (RuntimeException e) {
      throw releasing(calls, addresses, me, e);
    }
    for (byte[] v : verdicts) {
      if (v.length > 0) throw releasing(calls, addresses, me, new CudaException(new String(v, StandardCharsets.UTF_8)));
    }
    addresses[me] = address;
    return new CudaIpc(world, calls, addresses, sizes);
  }

  private static byte[] said(byte tag, String text) {
    byte[] t = text.getBytes(StandardCharsets.UTF_8);
    byte[] a = new byte[t.length + 1];
    a[0] = tag;
    System.arraycopy(t, 0, a, 1, t.length);
    return a;
  }

  /** {@code e}, after unmapping {@code addresses} (a failure to unmap is added to it as suppressed). */
  private static RuntimeException releasing(Calls calls, long[] addresses, int me, RuntimeException e) {
    try {
      release(calls, addresses, me);
    } catch (RuntimeException u) {
      e.addSuppressed(u);
    }
    return e;
  }

  /** Unmaps every peer mapping in {@code addresses} (not {@code me}'s own buffer); the first failure is rethrown after all. */
  private static void release(Calls calls, long[] addresses, int me) {
    RuntimeException first = null;
    for (int r = 0; r < addresses.length; r++) {
      if (r == me || addresses[r] == 0) continue;
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
      release(calls, addresses, world.rank());
    } catch (RuntimeException e) {
      unmap = e;
    }
    world.barrier();
    if (unmap != null) throw unmap;
  }
}
