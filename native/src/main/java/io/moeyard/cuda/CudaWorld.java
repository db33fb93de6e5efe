package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.function.Function;

/**
 * The {@code cuda} backend's world: R virtual ranks on GPU 0, one {@link CudaCommunicator} per rank
 * ({@link #communicator(int)}), each used from its own thread like the ranks of a
 * {@link CpuWorld}. Each rank has its own device buffers and its own stream; a collective meets all
 * ranks on the host (a rendezvous with a timeout naming the missing rank), and each rank enqueues
 * its own kernels on its own stream; kernels of rank r store straight into rank d's buffers, as
 * they would through CUDA IPC on an NVLink node, and cross-rank order is events, never a
 * device-wide barrier. That is the shape the multi-process backend (CUDA IPC) takes: the host
 * meeting becomes the process rendezvous, per-rank state already is per rank.
 *
 * <p>Everything is allocated at {@link #open}, for the config's sizes (maxTokens per rank, receive
 * rows), and freed by {@link #close()}: the world is the one owner of the ranks' device memory,
 * streams and events. A steady-state device-path call allocates nothing.
 *
 * <p>For benchmarks: {@link #timing} puts the collectives under a CUDA-event clock
 * ({@link #lastDeviceMs()}), {@link #useVariant} and {@link #useKernels} switch the data path between
 * collectives, {@link #copyMillis} times the roofline copy.
 */
public final class CudaWorld implements AutoCloseable {
  final KernelShape shape;
  final VirtualRanks ranks;
  final Clock clock;
  /**
   * How the node-level path's messages cross between machines (null: the world is one machine):
   * what {@link #join} chose.
   */
  final Leg leg;

  /**
   * Whether this world's meetings about device events are the transport's machine barriers
   * ({@link Transport#machineBarrier}): only when the world spans machines and the transport's
   * machines hold every rank CUDA IPC reaches ({@link #machineBarrierCovers}); else world barriers.
   */
  final boolean machineMeetings;
  /**
   * Whether some machine holds more than one node, so that node-level messages also pass between
   * ranks of one machine (peer copies): the same on every rank. Without, a world spanning machines
   * sends every such message between machines and its near channel is never called.
   */
  final boolean nearMessages;

  /** Opens the channel between machines for one rank (a collective: every rank, in its communicator's construction). */
  interface Leg {
    DeviceChannel open(Transport transport, boolean[] far, long maxBytes, VirtualRanks ranks);
  }

  /** Virtual ranks: the host meetings of the ranks' threads (null with one rank per process). */
  private final CpuWorld control;
  private final CudaCommunicator[] comms;
  private volatile CommConfig.Variant variant;
  private volatile int kernels = kernelsProperty();
  private volatile boolean timing;
  private boolean closed;

  /** The tuned fused kernels (the default). */
  public static final int KERNELS_TUNED = 0;
  /** The untuned fused kernels of simple.cu: same results; for measuring what the tuning buys. */
  public static final int KERNELS_SIMPLE = 1;

  private CudaWorld(KernelShape shape, Duration timeout) {
    this.shape = shape;
    this.leg = null;
    this.machineMeetings = false;
    this.nearMessages = true;
    this.variant = shape.comm().variant();
    NativeKernels.setDevice(0);
    this.ranks = new VirtualRanks(shape, NativeKernels.limits()[3]); // cfg::kLayoutChunkTokens
    try {
      this.clock = new Clock(ranks);
    } catch (RuntimeException e) {
      RuntimeException err = ranks.destroyStreams(ranks.releaseMemory(null));
      if (err != null) e.addSuppressed(err);
      throw e;
    }
    this.control = CpuWorld.create(shape.map().topology(), timeout);
    this.comms = new CudaCommunicator[shape.ranks()];
    try {
      for (int r = 0; r < comms.length; r++) comms[r] = new CudaCommunicator(this, control.transport(r));
    } catch (RuntimeException e) {
      // a communicator's own memory (its relay buffers) failed: release everything made so far
      RuntimeException err = null;
      for (CudaCommunicator c : comms) {
        if (c != null) err = Release.attempt(err, c::close);
      }
      control.close();
      err = clock.close(ranks.destroyStreams(ranks.releaseMemory(err)));
      if (err != null) e.addSuppressed(err);
      throw e;
    }
  }

  /** One rank per process: this process's rank of {@code transport}'s world, peers through CUDA IPC. */
  private CudaWorld(KernelShape shape, Transport transport, Duration deviceTimeout, boolean[] reach, Leg leg,
      boolean machineMeetings, boolean nearMessages) {
    this.shape = shape;
    this.leg = leg;
    this.machineMeetings = machineMeetings;
    this.nearMessages = nearMessages;
    this.variant = shape.comm().variant();
    int layoutChunk;
    try {
      NativeKernels.setDevice(0);
      layoutChunk = NativeKernels.limits()[3]; // cfg::kLayoutChunkTokens
    } catch (RuntimeException e) {
      transport.abort(e); // the peers are about to meet this rank in the ranks' first exchange
      throw e;
    }
    this.ranks = new VirtualRanks(shape, layoutChunk, transport, deviceTimeout, reach);
    try {
      this.clock = new Clock(ranks);
    } catch (RuntimeException e) {
      if (!CudaCommunicator.peersKnow(e)) transport.abort(e);
      RuntimeException err = ranks.destroyStreams(ranks.releaseMemory(null));
      if (err != null) e.addSuppressed(err);
      throw e;
    }
    this.control = null;
    this.comms = new CudaCommunicator[shape.ranks()];
    try {
      comms[transport.rank()] = new CudaCommunicator(this, transport);
    } catch (RuntimeException e) {
      // a failure the peers share (a verdict) takes every rank to the same closing barrier; any
      // other is this rank's alone, and the peers must hear of it before they meet that barrier
      if (!CudaCommunicator.peersKnow(e)) transport.abort(e);
      RuntimeException err = clock.close(ranks.destroyStreams(ranks.releaseMemory(null)));
      if (err != null) e.addSuppressed(err);
      throw e;
    }
  }
  /**
   * Opens R = {@code map.ranks()} virtual ranks on device 0 for {@code map} and the sizes of
   * {@code config}, or throws {@link CudaUnavailableException} with the reason. A shape the kernels
   * cannot take throws {@link IllegalArgumentException} naming the value before the device is touched.
   */
  public static CudaWorld open(ExpertMap map, CommConfig config) {
    return open(map, config, CpuWorld.DEFAULT_TIMEOUT);
  }

  /** As {@link #open(ExpertMap, CommConfig)}; a rank that does not reach a collective within {@code timeout} fails the others naming it. */
  public static CudaWorld open(ExpertMap map, CommConfig config, Duration timeout) {
    Objects.requireNonNull(timeout, "timeout");
    if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive, got " + timeout);
    KernelShape shape = KernelShape.of(map, config);
    CudaBackend.availability().require();
    return new CudaWorld(shape, timeout);
  }

  /**
   * Joins the world of {@code transport} as its rank, one rank per process (every rank calls it;
   * ranks that are threads of one JVM use {@link #open} instead): each process allocates its own
   * rank's device memory on device 0 for {@code map} and the sizes of {@code config}, and maps its
   * machine's peers' through CUDA IPC, so that the fused kernels store straight into other
   * processes' buffers; the collectives meet over {@code transport} (shared memory on one host, or
   * a transport that spans machines). The transport stays the caller's; close the world before it.
   *
   * <p>Ranks on more than one machine (host name and boot id differ): each node must lie within
   * one machine, the config's node path must be the relay, the shuffled combine's homes send
   * their rows to targets on other machines (through the transport) instead of being read, and
   * the device clock times each machine on its own
   * ({@link #clockRank}). Messages between machines
   * cross on an NCCL communicator of all ranks, built from a unique id that rank 0 makes (or the
   * engine's own: {@link #join(Transport, ExpertMap, CommConfig, Duration, NcclChannel)}).
   *
   * <p>Every rank gets the same error, naming the rank at fault, when any rank cannot use CUDA
   * ({@link CudaUnavailableException}), was given a different map or config, or cannot allocate,
   * export or map ({@link CudaException}); a rank that never arrives fails the others by the
   * transport's timeout.
   */
  public static CudaWorld join(Transport transport, ExpertMap map, CommConfig config) {
    return join(transport, map, config, DEFAULT_DEVICE_TIMEOUT);
  }

  /** How long a rank process waits for its own stream by default ({@link #join(Transport, ExpertMap, CommConfig, Duration)}). */
  public static final Duration DEFAULT_DEVICE_TIMEOUT = Duration.ofSeconds(60);

  /**
   * As {@link #join(Transport, ExpertMap, CommConfig)}; a wait of this rank for its own stream (the
   * layout's count read-back, the host path's copies) that lasts longer than {@code deviceTimeout}
   * throws a {@code CollectiveTimeoutException} naming the peers whose events have not fired: a
   * peer process that died mid-call leaves its events unrecorded, and without a bound the wait
   * would never end. Engine work queued on the stream before a call counts too, so the bound is
   * generous by default. A peer process that dies is found well before it, though: the wait asks
   * the transport about its peers every few milliseconds ({@link Transport#checkPeers}; over shared
   * memory, a peer whose process is gone), and ends with what it found, a
   * {@code CollectiveTimeoutException} naming the peer, or the abort of the world.
   */
  public static CudaWorld join(Transport transport, ExpertMap map, CommConfig config, Duration deviceTimeout) {
    return join(transport, map, config, deviceTimeout, machine(), null);
  }

  /**
   * As {@link #join(Transport, ExpertMap, CommConfig, Duration)} with the engine's own NCCL
   * communicator ({@link NcclChannel#wrap}) as the node-level path's leg between machines, instead
   * of one built from a unique id. Stays the engine's: the world does not destroy it.
   */
  public static CudaWorld join(Transport transport, ExpertMap map, CommConfig config, Duration deviceTimeout,
      NcclChannel crossMachine) {
    Objects.requireNonNull(crossMachine, "crossMachine");
    return join(transport, map, config, deviceTimeout, machine(),
        (t, far, max, ranks) -> NcclDeviceChannel.engines(crossMachine, t::checkPeers));
  }

  /**
   * {@link #join} as if on {@code machine}, crossing machines through {@code leg} (null: NCCL from
   * a unique id sent round the transport). Tests stand in for other machines and for NCCL.
   */
  static CudaWorld join(Transport transport, ExpertMap map, CommConfig config, Duration deviceTimeout, String machine,
      Leg leg) {
    Objects.requireNonNull(transport, "transport");
    Objects.requireNonNull(deviceTimeout, "deviceTimeout");
    if (deviceTimeout.isNegative() || deviceTimeout.isZero()) {
      throw new IllegalArgumentException("deviceTimeout must be positive, got " + deviceTimeout);
    }
    Objects.requireNonNull(map, "map");
    Objects.requireNonNull(config, "config");
    int me = transport.rank();
    String problem = null;
    KernelShape shape = null;
    try {
      if (transport.sharesAddressSpace()) {
        throw new IllegalArgumentException("the transport's ranks share this JVM; join is for one rank per process"
            + " (threads of one JVM open all ranks with CudaWorld.open)");
      }
      if (transport.size() != map.ranks()) {
        throw new IllegalArgumentException("the world has " + transport.size() + " ranks, the expert map " + map.ranks());
      }
      shape = KernelShape.of(map, config);
      CudaBackend.availability().require();
    } catch (CudaUnavailableException e) {
      problem = UNAVAILABLE + e.getMessage();
    } catch (RuntimeException e) {
      problem = "rank " + me + ": " + e.getMessage();
    }
    String same = map.topology() + " " + java.util.Arrays.hashCode(map.physicalToLogical()) + " " + config;
    // one exchange: the machine each rank runs on, what it was given, and its verdict. Bad input
    // (the caller's to fix) is named before a rank without CUDA, so that the error is the same
    // wherever it runs.
    Object[] said = transport.allGather(machine + "\t" + same + "\t" + (problem == null ? "" : problem));
    String[][] part = new String[said.length][];
    for (int q = 0; q < said.length; q++) part[q] = ((String) said[q]).split("\t", 3); // machine, same, problem
    String unavailable = null;
    for (String[] p : part) {
      if (p[2].startsWith(UNAVAILABLE)) {
        if (unavailable == null) unavailable = p[2].substring(UNAVAILABLE.length());
      } else if (!p[2].isEmpty()) {
        throw new IllegalArgumentException(p[2]);
      }
    }
    for (int q = 1; q < part.length; q++) {
      if (!part[q][1].equals(part[0][1])) {
        throw new IllegalArgumentException("rank " + q + " joins with " + part[q][1] + ", rank 0 with " + part[0][1]);
      }
    }
    boolean[] reach = new boolean[part.length];
    boolean machines = false;
    for (int q = 0; q < part.length; q++) {
      reach[q] = part[q][0].equals(part[me][0]);
      machines |= !part[q][0].equals(part[0][0]);
    }
    if (machines) {
      // stores stay within a node, and between machines only the node-level path's messages cross
      int local = map.topology().localRanks();
      for (int q = 0; q < part.length; q++) {
        int first = q / local * local;
        if (!part[q][0].equals(part[first][0])) {
          throw new IllegalArgumentException("node " + q / local + " spans machines: rank " + first + " runs on " + part[first][0]
              + ", rank " + q + " on " + part[q][0] + " (LOCAL_WORLD_SIZE must not exceed the ranks of one machine)");
        }
      }
      if (config.nodePath() != CommConfig.NodePath.RELAY) {
        throw new IllegalArgumentException("the ranks run on more than one machine, where only the node-level path crosses"
            + " (one message per token and node); nodePath " + config.nodePath() + " would store across machines");
      }
    }
    if (unavailable != null) throw new CudaUnavailableException(unavailable);
    String[] machineOf = new String[part.length];
    for (int q = 0; q < part.length; q++) machineOf[q] = part[q][0];
    return new CudaWorld(shape, transport, deviceTimeout, machines ? reach : null,
        !machines ? null : leg != null ? leg : ncclLeg(deviceTimeout),
        machines && machineBarrierCovers(machineOf, transport),
        !machines || nodesShareMachines(machineOf, map.topology().localRanks()));
  }

  /**
   * Whether {@code t}'s machine barrier waits for every rank whose device events a rank may wait
   * on: those on its machine as CUDA IPC reaches it ({@code machineOf}: every rank's machine name).
   * A transport that groups its ranks more finely (pretend machines within one) would let a rank
   * wait on an event its peer has not recorded yet, so it is then not used. The same answer on
   * every rank: both groupings are the world's.
   */
  static boolean machineBarrierCovers(String[] machineOf, Transport t) {
    java.util.Map<String, Integer> group = new java.util.HashMap<>();
    for (int q = 0; q < machineOf.length; q++) {
      Integer g = group.putIfAbsent(machineOf[q], t.machineOf(q));
      if (g != null && g != t.machineOf(q)) return false;
    }
    return true;
  }

  /** Whether some machine ({@code machineOf}: every rank's) holds ranks of two nodes of {@code localRanks} ranks. */
  static boolean nodesShareMachines(String[] machineOf, int localRanks) {
    java.util.Map<String, Integer> nodeOf = new java.util.HashMap<>();
    for (int q = 0; q < machineOf.length; q++) {
      Integer n = nodeOf.putIfAbsent(machineOf[q], q / localRanks);
      if (n != null && n != q / localRanks) return true;
    }
    return false;
  }

  /**
   * The default leg between machines: an NCCL communicator of all ranks from a unique id that rank
   * 0 makes and the transport carries; every rank fails alike where NCCL is missing on any. Its
   * set-up and every enqueue are bounded by {@code timeout} and watch the transport
   * ({@link Transport#checkPeers}), and a rank whose set-up fails aborts the transport: a peer
   * that fails or dies during NCCL's set-up would otherwise leave the others inside it.
   */
  private static Leg ncclLeg(Duration timeout) {
    return (t, far, max, ranks) -> new NcclDeviceChannel(ncclCommunicator(t, timeout, () -> {
      NcclAvailability.get().require();
      return NcclAvailability.get().channelCalls();
    }, NcclUniqueIds::make), t::checkPeers);
  }

  /**
   * The NCCL leg's communicator for this rank of {@code t} (a collective): {@code calls} (NCCL's,
   * or why not) on every rank and a unique id from rank 0 ({@code newId}) meet in one exchange,
   * so that a rank without NCCL fails all alike before any set-up; then the set-up, bounded by
   * {@code timeout} and watching {@code t}. A rank whose set-up fails aborts {@code t}: the others
   * are inside theirs, and only their watch can end it.
   */
  static NcclChannel ncclCommunicator(Transport t, Duration timeout, java.util.function.Supplier<NcclChannel.Nccl> calls,
      java.util.function.Supplier<byte[]> newId) {
    String problem = null;
    byte[] id = null;
    NcclChannel.Nccl nccl = null;
    try {
      nccl = calls.get();
      if (t.rank() == 0) id = newId.get();
    } catch (RuntimeException e) {
      problem = "rank " + t.rank() + ": " + e.getMessage();
    }
    Object[] said = t.allGather(problem != null ? (Object) problem : id != null ? id : new byte[0]);
    for (Object o : said) {
      if (o instanceof String p) throw new CudaException("the NCCL leg between machines: " + p);
    }
    try {
      return NcclChannel.create((byte[]) said[0], t.size(), t.rank(), timeout, t::checkPeers, nccl);
    } catch (RuntimeException e) {
      t.abort(e);
      throw e;
    }
  }

  /** The leg that stages messages through host memory and the transport ({@link HostStagedChannel}). */
  static final Leg HOST_LEG = (t, far, max, ranks) -> new HostStagedChannel(t, new HostStagedChannel.Device() {
    @Override
    public void synchronize(long stream) {
      ranks.synchronize(Math.max(0, ranks.me));
    }

    @Override
    public void copy(long dst, long src, long bytes) {
      NativeKernels.copy(dst, src, bytes);
    }
  }, far, max);

  private static final String UNAVAILABLE = "unavailable: ";

  /**
   * This machine, as far as CUDA IPC can reach: its host name and boot id (processes of one
   * machine share both; simulated nodes on one host are one machine), the same name a
   * {@link io.moeyard.engine.shm.ClusterTransport} groups its ranks by, so that its machine
   * barriers serve this world's meetings about device events.
   */
  private static String machine() {
    return io.moeyard.engine.shm.ClusterTransport.thisMachine();
  }

  /** Rank r's communicator (the same object on every call); use it from one thread. With one rank per process: this process's rank only. */
  public CudaCommunicator communicator(int r) {
    if (closed) throw new IllegalStateException("the cuda world is closed");
    Objects.checkIndex(r, comms.length);
    if (comms[r] == null) {
      throw new IllegalArgumentException("rank " + r + " runs in another process; this process is rank " + ranks.me);
    }
    return comms[r];
  }

  /** This process's rank's communicator, with one rank per process ({@link #join}). */
  public CudaCommunicator communicator() {
    if (ranks.me < 0) throw new IllegalStateException("every rank of this world runs here: use communicator(rank)");
    return communicator(ranks.me);
  }

  public int ranks() {
    return comms.length;
  }

  public ExpertMap expertMap() {
    return shape.map();
  }

  public CommConfig config() {
    return shape.comm();
  }

  /**
   * Runs {@code body} on every rank at once, one thread per rank (the control world's), and returns
   * the results by rank; a rank that throws anything but a collective's own error aborts the others
   * (so they fail at once instead of timing out) and the first failure is rethrown.
   */
  public <T> List<T> run(Function<CudaCommunicator, T> body) {
    if (closed) throw new IllegalStateException("the cuda world is closed");
    if (control == null) throw new IllegalStateException("this world's other ranks run in other processes: call communicator()");
    return control.run(t -> body.apply(comms[t.rank()]));
  }

  /** The data path of the following collectives (the config's by default); set it between collectives. */
  public void useVariant(CommConfig.Variant v) {
    variant = Objects.requireNonNull(v, "variant");
  }

  CommConfig.Variant variant() {
    return variant;
  }

  /**
   * Which fused kernels run: {@link #KERNELS_TUNED}, {@link #KERNELS_SIMPLE}, or a combine tuning
   * candidate (2 and up, listed in combine.cu); {@code -Dmoeyard.cuda.kernels=simple} or a number at
   * open. For benchmarks; set it between collectives.
   */
  public void useKernels(int kernelSet) {
    if (kernelSet < 0) throw new IllegalArgumentException("kernel set " + kernelSet + " < 0");
    kernels = kernelSet;
  }

  public int kernels() {
    return kernels;
  }

  /** Times the following collectives with CUDA events ({@link #lastDeviceMs()}); set it between collectives. */
  public void timing(boolean on) {
    timing = on;
  }

  boolean timed() {
    return timing;
  }

  /**
   * Device time of the last timed collective (CUDA events over all ranks' streams): for a dispatch,
   * from the moment every rank's receive offsets are known (after the layout and the count
   * read-back) to the last destination done; for a combine, all of it. Waits for that call's end;
   * call it between collectives (e.g. on rank 0's thread after its call returned).
   */
  public float lastDeviceMs() {
    int c = ranks.clockRank();
    if (ranks.me >= 0 && ranks.me != c) {
      throw new IllegalStateException("rank " + c + "'s process keeps " + (ranks.machines ? "this machine's" : "the")
          + " clock; this is rank " + ranks.me);
    }
    return clock.elapsedMs();
  }

  /**
   * The rank whose process keeps the device clock that times this rank's calls: rank 0 in a world
   * of one machine; across machines, each machine's first rank, whose {@link #lastDeviceMs} is
   * that machine's time (the world's is the longest of them).
   */
  public int clockRank() {
    return ranks.clockRank();
  }

  /** Timed calls whose start event had fired before their enqueue ended (launch latency counted). */
  public int shortHolds() {
    return clock.shortHolds();
  }

  /** Device-to-device copy of {@code bytes} on one stream, median of {@code iters} timed runs (ms): the roofline. Allocates. */
  public float copyMillis(long bytes, int iters) {
    if (closed) throw new IllegalStateException("the cuda world is closed");
    RuntimeException err = ranks.synchronizeAll(null);
    if (err != null) throw err;
    return clock.copyMillis(bytes, iters);
  }

  /** {free, total} bytes of device 0 ({@code cudaMemGetInfo}): to watch that steady-state calls allocate nothing. */
  public static long[] deviceMemory() {
    CudaBackend.availability().require();
    return NativeKernels.memGetInfo();
  }

  /** What the device and this world say of an address (the calls' argument checks). */
  final CallChecks.Memory memory = new CallChecks.Memory() {
    @Override
    public int[] kind(long address) {
      return NativeKernels.pointerKind(address);
    }

    @Override
    public int ownerOf(long address, long bytes) {
      int r = ranks.ownerOf(address, bytes);
      if (r != -1) return r;
      for (int q = 0; q < comms.length; q++) {
        RelayBuffers rb = comms[q] == null ? null : comms[q].relayBuffers();
        if (rb != null && rb.overlaps(address, bytes)) return q;
      }
      return -1;
    }

    @Override
    public boolean inReceiveRows(int rank, long address, long bytes) {
      long start = ranks.buf[rank].recvX;
      long end = start + (long) shape.receiveRows() * shape.rowBytes();
      return address >= start && address + bytes <= end;
    }
  };

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

  /**
   * Closes every communicator (their later calls fail naming their rank), waits for every stream
   * and frees all device memory, streams and events. Call it after the ranks' last collective.
   * With one rank per process it is a collective too: every rank unmaps its peers and waits for
   * the others to have unmapped it (bounded by the transport's timeout) before it frees its memory.
   */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    RuntimeException err = null;
    for (CudaCommunicator c : comms) {
      if (c != null) err = Release.attempt(err, c::close);
    }
    if (control != null) control.close();
    err = ranks.synchronizeAll(err);
    err = ranks.releaseMemory(err);
    err = clock.close(err);
    err = ranks.destroyStreams(err);
    if (err != null) throw err;
  }
}
