package io.moeyard.cuda;

import io.moeyard.comm.Arrivals;
import io.moeyard.comm.AsyncLane;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.comm.ShuffledCombine;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;

/**
 * One rank of a {@link CudaWorld}: the {@link Communicator} of the {@code cuda} backend.
 *
 * <p><b>Device path</b> (what a GPU engine uses): {@link #dispatch(DeviceRows, DeviceRouting,
 * CudaStream)} and {@link #combine(DeviceDispatched, DeviceRows, DeviceRows, CudaStream)} take device
 * addresses and the engine's stream; the call orders itself after the work already on that stream
 * and puts its completion on it. The layout runs on the device; the thread waits once per dispatch,
 * for the layout counts (receive sizes, the capacity check and the unfused path's copy ranges come
 * from them); nothing else synchronises and nothing is allocated.
 *
 * <p><b>Host path</b> (the {@link Communicator} methods on {@link RowBuffer}s, for tests, selftest
 * and the bench's checks): copies the rows and routing into this rank's staging on the device
 * (allocated on the first host call, freed by {@link #close()}), runs the device path, waits, and
 * copies the results back. {@link #download(DeviceDispatched)} is the same copy-back for a device
 * result.
 *
 * <p>Every misuse (shapes or dtypes other than the config, more tokens than it was built for,
 * an address that is not device memory of device 0 or that lies in the communicator's own buffers,
 * an expert id out of range or repeated in a row, a non-finite routed weight, more received rows
 * than the receive buffer holds, a result of another communicator or an older dispatch, a closed
 * communicator) makes every rank throw the same {@link CollectiveException} naming it, before any
 * row is written. A failed dispatch leaves the previous dispatch's result stale on every rank
 * that ran its layout: each rank without a problem of its own runs it before the one meeting that
 * tells it the others' verdicts (a combine of that result is then refused on every rank).
 */
public final class CudaCommunicator implements Communicator {
  private final CudaWorld world;
  private final VirtualRanks w;
  private final KernelShape shape;
  private final Transport transport;
  private final int rank;
  private final AsyncLane lane;
  private volatile boolean closed;
  private long generation;
  /** The last dispatch's counts and tokens, for its combine. */
  private WorldCounts counts;
  /** This rank's own receive rows, as device rows. */
  private final DeviceRows ownReceive;
  /** The host path's device staging and host mirror; allocated on the first host call. */
  private DeviceArena staging;
  private long stX;
  private long stScales;
  private long stIdx;
  private long stW;
  private long stY;
  private long stOut;
  private Arena hostArena;
  private RowBuffer hostReceive;
  /** The node-level path's device memory and cross-node channel; null unless nodePath RELAY on more than one node. */
  private final RelayBuffers relay;
  private final DeviceChannel channel;
  /**
   * Ranks on more than one machine: the channel's leg between machines (owned by {@link #channel}),
   * which the unfused path's blocks cross on, and their exchange arguments; else null.
   */
  private DeviceChannel farLeg;
  private final long[][] farArgs;
  /**
   * One rank per process on more than one machine: between calls, ends the device's waits on the
   * leg between machines once the transport reports a peer's failure ({@link PeerWatch}); else null.
   */
  private final PeerWatch watch;
  /** Every rank's relay staging (device addresses), looked up on first use: the ranks share this process. */
  private long[] stagingOf;

  CudaCommunicator(CudaWorld world, Transport transport) {
    this.world = world;
    this.w = world.ranks;
    this.shape = world.shape;
    this.transport = transport;
    this.rank = transport.rank();
    this.lane = new AsyncLane("moeyard-cuda-rank-" + rank, "rank " + rank);
    RankBuffers b = w.buf[rank];
    this.ownReceive = new DeviceRows(b.recvX, shape.receiveRows(), shape.hidden(), shape.dispatchType(), b.recvScales);
    // between processes the shuffled combine's home rows must be memory the targets can read: a
    // shared-memory file, sized here because making one is a collective (the ranks build their
    // communicators at the same point of the world's construction)
    this.farArgs = w.machines ? UnfusedPath.farArgs(w.nR) : null;
    this.shufflePeer = transport.sharesAddressSpace() ? null : sharedHome(transport,
        PeerMemory.rowsBytes(ShuffledCombine.homeRows(shape.comm()), shape.hidden(), shape.combineType()));
    try {
      if (shape.comm().nodePath() == CommConfig.NodePath.RELAY && shape.localRanks() < shape.ranks()) {
        RelayBuffers rb = null;
        PeerCopyChannel ch = null;
        try {
          try {
            rb = RelayBuffers.allocate(shape, rank, NativeKernels.limits()[3]); // cfg::kLayoutChunkTokens
            ch = new PeerCopyChannel(transport, PeerCopyChannel.CUDA, w.me >= 0);
          } catch (RuntimeException e) {
            if (w.me < 0) throw e;
            // between processes the peers are about to meet this rank: they hear of it there
            shareRelay(null, null, "rank " + rank + " could not set up its relay buffers: " + e.getMessage());
          }
          if (w.me >= 0) shareRelay(rb, ch, null);
        } catch (RuntimeException e) {
          if (ch != null) Release.attempt(e, ch::close);
          if (rb != null) Release.attempt(e, rb::close);
          throw e;
        }
        this.relay = rb;
        this.channel = w.machines ? between(ch, rb) : ch;
      } else {
        this.relay = null;
        this.channel = null;
      }
    } catch (RuntimeException e) {
      // no communicator comes out of this constructor to close it later: the shared memory goes now
      if (shufflePeer != null) Release.attempt(e, shufflePeer::close);
      throw e;
    }
    this.watch = w.me >= 0 && w.machines && channel != null
        ? new PeerWatch("moeyard-peer-watch-" + rank, transport::checkPeers, channel::abandon, PeerWatch.PERIOD_NANOS)
        : null;
  }

  /**
   * Ranks on more than one machine: peer copies within this machine, the world's leg (NCCL, or
   * host staging) to the others, sized for the largest message (a dispatch message of maxTokens
   * tokens, or their node partials, or an unfused block: at most the receive rows).
   */
  private DeviceChannel between(PeerCopyChannel near, RelayBuffers rb) {
    boolean[] far = new boolean[w.nR];
    for (int q = 0; q < far.length; q++) far[q] = !w.reach[q];
    long max = Math.max(rb.slotBytes, (long) rb.slotTokens * shape.combineRowBytes());
    max = Math.max(max, (long) shape.receiveRows() * Math.max(shape.rowBytes(), shape.combineRowBytes()));
    try {
      farLeg = world.leg.open(transport, far, max, w);
      return new SplitChannel(near, farLeg, w.reach, world.nearMessages);
    } catch (RuntimeException e) {
      // a leg may fail on this rank alone (NCCL's set-up, the host staging's memory), and peers
      // past it would meet the closing barrier below in their next collective: abort first (the
      // world aborts on any failure of its construction anyway)
      transport.abort(e);
      if (relayPeers != null) Release.attempt(e, relayPeers::close);
      Release.attempt(e, near::close);
      Release.attempt(e, rb::close);
      throw e;
    }
  }

  /** One rank per process: the peers' relay buffers mapped here (CUDA IPC, with the channel's events). */
  private CudaIpc relayPeers;

  /**
   * Between rank processes, expert ranks store partials into the staging of their node's relay and
   * the channel copies messages out of the senders' memory: every rank maps every peer's relay
   * buffers and opens its channel events, and translates what peers post into its own addresses
   * (the buffers have the same layout on every rank, so an offset from a peer's base is the same
   * here). Fails every rank alike.
   */
  private void shareRelay(RelayBuffers rb, PeerCopyChannel ch, String problem) {
    Object[] bases = transport.allGather(problem != null ? problem : (Object) rb.base);
    for (Object o : bases) {
      if (o instanceof String p) throw new VerdictException(p);
    }
    long[] base = new long[bases.length];
    for (int q = 0; q < base.length; q++) base[q] = (Long) bases[q];
    CudaIpc ipc = CudaIpc.open(transport, rb.base, rb.bytes, ch.events(), w.reach);
    ch.reach(new PeerCopyChannel.Peers() {
      @Override
      public long address(int peer, long posted) {
        return peer == rank ? posted : ipc.address(peer) + (posted - base[peer]);
      }

      @Override
      public long event(int peer, int which, long posted) {
        return peer == rank ? posted : ipc.event(peer, which);
      }
    });
    long[] s = new long[w.nR];
    // relays are on this rank's node, so within reach; the others' entries are never read
    for (int q = 0; q < s.length; q++) s[q] = q == rank ? rb.staging : w.reach[q] ? ipc.address(q) + (rb.staging - rb.base) : 0L;
    stagingOf = s;
    relayPeers = ipc;
    for (int q = 0; q < w.nR; q++) {
      if (q != rank && w.reach[q]) w.watched[q] = new long[] {ipc.event(q, 0), ipc.event(q, 1)};
    }
  }

  /** The node relay's buffers of this rank (null when it does not relay). */
  RelayBuffers relayBuffers() {
    return relay;
  }

  private long[] stagingOf() {
    if (stagingOf == null) {
      long[] s = new long[w.nR];
      for (int q = 0; q < s.length; q++) s[q] = world.communicator(q).relayBuffers().staging;
      stagingOf = s;
    }
    return stagingOf;
  }

  @Override
  public int rank() {
    return rank;
  }

  @Override
  public int ranks() {
    return w.nR;
  }

  @Override
  public ExpertMap expertMap() {
    return shape.map();
  }

  @Override
  public CommConfig config() {
    return shape.comm();
  }

  @Override
  public int receiveCapacity() {
    return shape.receiveRows();
  }

  /** The world this rank belongs to (timing and benchmark switches). */
  public CudaWorld world() {
    return world;
  }

  // ---- the device path ------------------------------------------------------------------------

  /** This rank's own receive rows (device memory): where {@link #dispatch(DeviceRows, DeviceRouting, CudaStream)} puts them. */
  public DeviceRows receiveRows() {
    return ownReceive;
  }

  /** Dispatches into this communicator's own receive rows (valid until its next dispatch). */
  public DeviceDispatched dispatch(DeviceRows x, DeviceRouting routing, CudaStream stream) {
    return dispatch(x, routing, null, stream, null, -1);
  }

  /**
   * Dispatches into the engine's rows {@code into} (at least as many rows as this rank receives,
   * the config's dispatch dtype and hidden size; FP8 scales beside them). A larger {@code into}
   * does not raise the limit: at most the config's receive rows arrive, since each row's weight
   * is kept in the communicator's own memory.
   */
  public DeviceDispatched dispatch(DeviceRows x, DeviceRouting routing, DeviceRows into, CudaStream stream) {
    return dispatch(x, routing, Objects.requireNonNull(into, "into"), stream, null, -1);
  }

  /** Writes into {@code out} ({@code d.tokens()} rows, combine dtype) the weighted sum of the expert outputs {@code y}. */
  public void combine(DeviceDispatched d, DeviceRows y, DeviceRows out, CudaStream stream) {
    combine(d, y, out, stream, null, false);
  }

  /**
   * What each rank says when a dispatch starts: its verdict on its arguments, where its rows go,
   * the world's switches as it read them (all ranks must run the same path, or the timed path's
   * barriers would not pair up), and after its layout its routing's first problem, its tokens and
   * its counts (none where it has a problem of its own: it ran no layout).
   */
  private record Entry(String problem, long rows, long scales, int capacity, boolean own, Switches switches,
      String badRouting, int tokens, int[] totals) {}

  /** The world's benchmark switches as one rank read them at the start of a call. */
  private record Switches(CommConfig.Variant variant, boolean timed, int kernels) {}

  /** A combine's opening word: the rank's verdict and switches. */
  private record Opening(String problem, Switches switches) {}

  private Switches switches() {
    return new Switches(world.variant(), world.timed(), world.kernels());
  }

  /** The switches every rank read, or a failure on every rank naming the first that differs. */
  private static Switches agreed(String op, Switches[] all) {
    for (int q = 1; q < all.length; q++) {
      if (!all[q].equals(all[0])) {
        throw new CollectiveException(op + ": rank " + q + " runs " + all[q] + ", rank 0 " + all[0]
            + ": switch the world's variant, kernels or timing only between collectives");
      }
    }
    return all[0];
  }

  // How the three messages cross a process boundary (ranks of one JVM pass the objects).
  private static void putSwitches(Switches s, MessageWriter out) {
    out.putInt(s.variant().ordinal()).putBoolean(s.timed()).putInt(s.kernels());
  }

  private static Switches getSwitches(MessageReader in) {
    return new Switches(CommConfig.Variant.values()[in.getInt()], in.getBoolean(), in.getInt());
  }

  private static final MessageCodec<Entry> ENTRY = new MessageCodec<>() {
    @Override
    public void write(Entry e, MessageWriter out) {
      out.putString(e.problem()).putLong(e.rows()).putLong(e.scales()).putInt(e.capacity()).putBoolean(e.own());
      putSwitches(e.switches(), out);
      out.putString(e.badRouting()).putInt(e.tokens()).putInts(e.totals());
    }

    @Override
    public Entry read(MessageReader in) {
      return new Entry(in.getString(), in.getLong(), in.getLong(), in.getInt(), in.getBoolean(), getSwitches(in),
          in.getString(), in.getInt(), in.getInts());
    }
  };

  private static final MessageCodec<Opening> OPENING = new MessageCodec<>() {
    @Override
    public void write(Opening o, MessageWriter out) {
      out.putString(o.problem());
      putSwitches(o.switches(), out);
    }

    @Override
    public Opening read(MessageReader in) {
      return new Opening(in.getString(), getSwitches(in));
    }
  };

  /**
   * The dispatch of both paths. {@code hostCapacity}: -1 on the device path; on the host path the
   * rows the caller's host buffer holds (the received rows are copied there), its problem in
   * {@code hostProblem}.
   */
  private DeviceDispatched dispatch(DeviceRows x, DeviceRouting routing, DeviceRows into, CudaStream stream,
      String hostProblem, int hostCapacity) {
    if (watch == null) return dispatchCall(x, routing, into, stream, hostProblem, hostCapacity);
    watch.enter();
    try {
      return dispatchCall(x, routing, into, stream, hostProblem, hostCapacity);
    } finally {
      watch.exit();
    }
  }

  private DeviceDispatched dispatchCall(DeviceRows x, DeviceRouting routing, DeviceRows into, CudaStream stream,
      String hostProblem, int hostCapacity) {
    boolean hostPath = hostCapacity >= 0;
    String problem = hostPath ? hostProblem
        : CallChecks.dispatch(shape, rank, closed, x, routing, into, stream, world.memory);
    DeviceRows recv = into != null ? into : ownReceive;
    int capacity = hostPath ? Math.min(hostCapacity, recv.rows()) : recv.rows();
    // whatever rows the engine passes, each received row's weight (and the unfused path's staging)
    // is in this rank's own buffers, sized for receiveRows; one rank per process, peers also store
    // the rows themselves into this rank's own receive rows (the mapped ones) and the engine's get
    // a local copy of them
    if (into != null) capacity = Math.min(capacity, ownReceive.rows());
    boolean viaOwn = into != null && w.me >= 0;
    Switches mySwitches = switches();
    // One meeting says everything a dispatch needs from every rank: its verdict on its arguments,
    // where its rows go, its switches, and (after its layout) its routing's verdict and counts. So
    // a rank without a problem of its own runs its layout before it knows the others' verdicts: a
    // world spanning machines pays a round between machines per meeting. A failed dispatch then
    // ends the previous dispatch on those ranks (as a bad routing always did), never any output.
    boolean relaying = relay != null && mySwitches.variant() == CommConfig.Variant.FUSED;
    long st = w.streams[rank];
    RankBuffers b = w.buf[rank];
    int tokens = 0;
    String bad = null;
    int[] announced = new int[0];
    if (problem == null) {
      try {
        // from here on the layout overwrites the previous dispatch's bookkeeping
        generation++;
        counts = null;
        if (stream != null) {
          NativeKernels.eventRecord(w.evEntry[rank], stream.handle());
          NativeKernels.streamWaitEvent(st, w.evEntry[rank]);
        }
        tokens = routing.tokens();
        // the communicator's own copy of the routing: the engine may reuse its buffers, and the
        // combine reads the weights without reading engine memory the dispatch was given
        if (routing.idxAddress() != b.topkIdx) {
          NativeKernels.copyDeviceToDeviceAsync(b.topkIdx, routing.idxAddress(), routing.bytes(), st);
          NativeKernels.copyDeviceToDeviceAsync(b.topkW, routing.weightsAddress(), routing.bytes(), st);
        }
        // the node-level path also announces each rank's tokens per node (after the layout counts)
        int[] mine = LayoutPhase.run(w, rank, tokens, relaying ? relay : null);
        int nb = w.nP + w.nR;
        bad = mine[nb] != -1 ? LayoutPhase.badRouting(w, rank, mine[nb]) : null;
        announced = relaying ? RelayPath.announced(mine, nb, relay.nodes) : java.util.Arrays.copyOf(mine, nb);
      } catch (RuntimeException e) {
        abortOthers(e);
        throw e;
      }
    }
    Object[] entries = transport.allGather(problem != null ? new Entry(problem, 0, 0, 0, false, mySwitches, null, 0, new int[0])
        : new Entry(null, recv.address(), recv.scalesAddress(), capacity, capacity == ownReceive.rows(), mySwitches, bad, tokens,
            announced), ENTRY);
    throwFirst("dispatch", entries, e -> ((Entry) e).problem());
    Switches[] sw = new Switches[entries.length];
    for (int q = 0; q < sw.length; q++) sw[q] = ((Entry) entries[q]).switches();
    Switches on = agreed("dispatch", sw);
    throwFirst("dispatch", entries, e -> ((Entry) e).badRouting());
    try {
      CommConfig.Variant variant = on.variant();
      boolean timed = on.timed();
      int kernels = on.kernels();
      int[] tok = new int[w.nR];
      int[][] totals = new int[w.nR][];
      for (int q = 0; q < w.nR; q++) {
        tok[q] = ((Entry) entries[q]).tokens();
        totals[q] = ((Entry) entries[q]).totals();
      }
      WorldCounts c = new WorldCounts(tok, totals, w.nS);
      // every rank checks every destination: the same verdict everywhere, before any row moves
      for (int d = 0; d < w.nR; d++) {
        Entry e = (Entry) entries[d];
        String p = CallChecks.receive(d, c.rows[d], c.pairs[d], e.capacity(), e.own(), w.buf[d].receivePairs);
        if (p != null) throw new CollectiveException("dispatch: " + p);
      }
      w.uploadTotals(totals);
      LayoutPhase.offsets(w, rank);
      if (variant == CommConfig.Variant.FUSED && w.me < 0) {
        for (int d = 0; d < w.nR; d++) {
          Entry e = (Entry) entries[d];
          w.pointReceive(rank, d, e.rows(), e.scales());
        }
      }
      meetMachine(); // every rank's offsets event is recorded
      startData(st, timed);
      if (relaying) {
        RelayPath.dispatch(w, relay, channel, rank, x, tokens, c);
      } else if (variant == CommConfig.Variant.FUSED) {
        FusedPath.dispatch(w, rank, x, tokens, kernels);
      } else {
        UnfusedPath.dispatchSend(w, rank, x, c, farLeg, farArgs);
      }
      exchangeSends(st);
      if (variant == CommConfig.Variant.UNFUSED) {
        UnfusedPath.dispatchReceive(w, rank, c, recv);
      } else if (viaOwn) {
        copyRows(ownReceive, recv, c.rows[rank], st);
      }
      finish(st, timed, stream);
      counts = c;
      int crossed = relaying ? RelayPath.rowsSentAcrossNodes(c, w.nP, w.nR, shape.localRanks(), rank)
          : c.rowsSentAcrossNodes(rank, shape.localRanks(), variant == CommConfig.Variant.FUSED);
      return new DeviceDispatched(this, generation, variant, recv.first(c.rows[rank]), c.slotOffsets(rank), tokens,
          c.pairs[rank], crossed);
    } catch (RuntimeException e) {
      abortOthers(e);
      throw e;
    }
  }

  private void combine(DeviceDispatched d, DeviceRows y, DeviceRows out, CudaStream stream, String hostProblem,
      boolean hostPath) {
    if (watch == null) {
      combineCall(d, y, out, stream, hostProblem, hostPath);
      return;
    }
    watch.enter();
    try {
      combineCall(d, y, out, stream, hostProblem, hostPath);
    } finally {
      watch.exit();
    }
  }

  private void combineCall(DeviceDispatched d, DeviceRows y, DeviceRows out, CudaStream stream, String hostProblem,
      boolean hostPath) {
    Switches mySwitches = switches();
    CommConfig.Variant variant = mySwitches.variant();
    String problem = hostPath ? hostProblem
        : CallChecks.combine(shape, rank, closed, this, generation, variant, d, y, out, stream, world.memory);
    if (problem == null && counts == null) problem = "rank " + rank + ": no complete dispatch to combine";
    Object[] openings = transport.allGather(new Opening(problem, mySwitches), OPENING);
    throwFirst("combine", openings, e -> ((Opening) e).problem());
    Switches[] sw = new Switches[openings.length];
    for (int q = 0; q < sw.length; q++) sw[q] = ((Opening) openings[q]).switches();
    Switches on = agreed("combine", sw);
    try {
      boolean timed = on.timed();
      int kernels = on.kernels();
      long st = w.streams[rank];
      if (stream != null) {
        NativeKernels.eventRecord(w.evEntry[rank], stream.handle());
        NativeKernels.streamWaitEvent(st, w.evEntry[rank]);
      }
      // peers store into this rank's partials / return rows: they wait until it is here
      NativeKernels.eventRecord(w.evStage[rank], st);
      meetMachine();
      startData(st, timed);
      boolean relaying = relay != null && variant == CommConfig.Variant.FUSED;
      if (relaying) {
        RelayPath.combineSend(w, relay, stagingOf(), rank, y, counts);
      } else if (variant == CommConfig.Variant.FUSED) {
        FusedPath.combineSend(w, rank, y, counts.pairs[rank], kernels);
      } else {
        UnfusedPath.combineSend(w, rank, y, counts, farLeg, farArgs);
      }
      exchangeSends(st);
      if (relaying) {
        RelayPath.combineHome(w, relay, channel, rank, d.tokens(), out, counts);
      } else if (variant == CommConfig.Variant.FUSED) {
        FusedPath.combineHome(w, rank, d.tokens(), out, kernels);
      } else {
        UnfusedPath.combineReceive(w, rank, d.tokens(), out);
      }
      finish(st, timed, stream);
    } catch (RuntimeException e) {
      abortOthers(e);
      throw e;
    }
  }

  /** The first {@code rows} rows (and FP8 scales) of {@code from} into {@code to}, on this rank's stream. */
  private void copyRows(DeviceRows from, DeviceRows to, int rows, long st) {
    NativeKernels.copyDeviceToDeviceAsync(to.address(), from.address(), (long) rows * shape.rowBytes(), st);
    if (shape.scaleCols() > 0) {
      NativeKernels.copyDeviceToDeviceAsync(to.scalesAddress(), from.scalesAddress(), 4L * rows * shape.scaleCols(), st);
    }
  }

  /**
   * Every stream starts the data phase once every rank's {@code evStage} fired (under the clock when
   * timed: each machine's clock rank holds its machine's gate).
   */
  private void startData(long st, boolean timed) {
    if (timed) {
      int clockRank = w.clockRank();
      if (rank == clockRank) world.clock.start(w.evStage);
      meetMachine(); // the start event is recorded
      if (rank != clockRank) NativeKernels.streamWaitEvent(st, world.clock.startEvent());
    } else {
      VirtualRanks.waitAll(st, w.evStage);
    }
  }

  /**
   * A meeting about device events: they pass only between ranks of one machine, so a world
   * spanning machines meets within each machine where its transport can ({@link CudaWorld#machineMeetings});
   * what crosses machines is ordered by the leg's own send/receive on the streams.
   */
  private void meetMachine() {
    if (world.machineMeetings) {
      transport.machineBarrier();
    } else {
      transport.barrier();
    }
  }

  /** This rank has stored into its peers; it goes on once every rank has stored into it. */
  private void exchangeSends(long st) {
    NativeKernels.eventRecord(w.evSend[rank], st);
    meetMachine(); // every rank's send event is recorded
    VirtualRanks.waitAll(st, w.evSend);
  }

  private void finish(long st, boolean timed, CudaStream stream) {
    NativeKernels.eventRecord(w.evDone[rank], st);
    if (timed) {
      meetMachine(); // every rank's done event is recorded
      if (rank == w.clockRank()) world.clock.stop();
    }
    if (stream != null) NativeKernels.streamWaitEvent(stream.handle(), w.evDone[rank]);
  }

  private static void throwFirst(String op, Object[] got, java.util.function.Function<Object, String> problem) {
    for (Object o : got) {
      String p = problem.apply(o);
      if (p != null) throw new CollectiveException(op + ": " + p);
    }
  }

  /** A failure the peers cannot know of (a CUDA error) fails them at once instead of at the timeout. */
  private void abortOthers(RuntimeException e) {
    if (!peersKnow(e)) transport.abort(e);
  }

  /**
   * Whether every rank throws {@code e} too: a collective's verdict does ({@link VerdictException}
   * among them), but a timeout may be
   * this rank's alone (its wait for its own stream, {@link VirtualRanks#synchronize}, while the
   * peers already wait in the next meeting), and so may anything else.
   */
  static boolean peersKnow(RuntimeException e) {
    return e instanceof VerdictException
        || e instanceof CollectiveException && !(e instanceof io.moeyard.engine.CollectiveTimeoutException);
  }

  // ---- the host path ---------------------------------------------------------------------------

  @Override
  public Dispatched dispatch(RowBuffer x, Routing routing) {
    return hostDispatch(x, routing, null, false);
  }

  @Override
  public Dispatched dispatch(RowBuffer x, Routing routing, RowBuffer into) {
    return hostDispatch(x, routing, Objects.requireNonNull(into, "into"), false);
  }

  private Dispatched hostDispatch(RowBuffer x, Routing routing, RowBuffer into, boolean async) {
    String problem = CallChecks.hostDispatch(shape, rank, closed, x, routing, into);
    if (!async && lane.pending() > 0) {
      if (problem == null) problem = "rank " + rank + ": a synchronous call while " + lane.pending() + " async call(s) are pending";
      lane.awaitIdle(); // they wait for peers in collectives of their own, which this refusal's must not meet
    }
    DeviceRows dx = null;
    DeviceRouting dr = null;
    if (problem == null) {
      try {
        ensureStaging();
        int t = routing.tokens();
        w.synchronize(rank); // the staging is free
        byte[] rows = bytes(x.segment(), x.offset(), (long) t * x.rowBytes());
        NativeKernels.bytesToDevice(rows, 0, rows.length, stX);
        if (shape.scaleCols() > 0) {
          float[] sc = x.scales().asSlice(0, 4L * t * shape.scaleCols()).toArray(ValueLayout.JAVA_FLOAT);
          NativeKernels.floatsToDevice(sc, 0, sc.length, stScales);
        }
        NativeKernels.intsToDevice(routing.topkIdx(), 0, routing.topkIdx().length, stIdx);
        NativeKernels.floatsToDevice(routing.topkWeights(), 0, routing.topkWeights().length, stW);
        dx = new DeviceRows(stX, t, shape.hidden(), shape.dispatchType(), stScales);
        dr = new DeviceRouting(stIdx, stW, t, shape.topk());
      } catch (RuntimeException e) {
        // told to the others in the call's first exchange, so that they fail now, not at the timeout
        problem = "rank " + rank + ": the host path's upload failed: " + e;
      }
    }
    int capacity = into != null ? into.rows() : shape.receiveRows();
    DeviceDispatched d = dispatch(dx, dr, null, null, problem, capacity);
    return download(d, into);
  }

  /**
   * A host copy of a device dispatch result (its rows, weights, FP8 scales and, after a fused
   * dispatch, each row's source token), as a {@link Dispatched}; waits for the dispatch. For tests
   * and checks: it allocates and copies.
   */
  public Dispatched download(DeviceDispatched d) {
    return download(d, null);
  }

  private Dispatched download(DeviceDispatched d, RowBuffer into) {
    String p = CallChecks.handle("rank " + rank + ": ", this, generation, null, d);
    if (p != null) throw new IllegalArgumentException(p);
    w.synchronize(rank);
    int n = d.receivedRows();
    RowBuffer host = into;
    if (host == null) {
      // the host mirror grows to the most rows received so far; the previous result's rows go
      // with it (a Dispatched is valid until the next dispatch)
      if (hostReceive == null || hostReceive.rows() < n) {
        if (hostArena != null) hostArena.close();
        hostArena = Arena.ofShared();
        hostReceive = RowBuffer.allocate(hostArena, n, shape.hidden(), shape.dispatchType());
      }
      host = hostReceive;
    }
    if (n > host.rows()) {
      throw new IllegalArgumentException("rank " + rank + ": the receive buffer has " + host.rows() + " rows, " + n + " arrived");
    }
    DeviceRows rows = d.received();
    byte[] b = new byte[Math.toIntExact(rows.byteSize())];
    NativeKernels.bytesFromDevice(rows.address(), b, 0, b.length);
    MemorySegment.copy(b, 0, host.segment(), ValueLayout.JAVA_BYTE, host.offset(), b.length);
    if (shape.scaleCols() > 0) {
      float[] sc = new float[n * shape.scaleCols()];
      NativeKernels.floatsFromDevice(rows.scalesAddress(), sc, 0, sc.length);
      MemorySegment.copy(sc, 0, host.scales(), ValueLayout.JAVA_FLOAT, 0, sc.length);
    }
    RankBuffers buf = w.buf[rank];
    float[] weights = new float[n];
    NativeKernels.floatsFromDevice(buf.recvW, weights, 0, n);
    int[] rowToken = null;
    int[] pairSrc = null;
    int[] pairToken = null;
    if (d.variant == CommConfig.Variant.FUSED) {
      int q = d.receivedPairs();
      pairSrc = new int[q];
      pairToken = new int[q];
      int[] pairRows = new int[q * shape.topk()];
      NativeKernels.intsFromDevice(buf.pairSrc, pairSrc, 0, q);
      NativeKernels.intsFromDevice(buf.pairToken, pairToken, 0, q);
      NativeKernels.intsFromDevice(buf.pairRows, pairRows, 0, pairRows.length);
      rowToken = new int[n];
      java.util.Arrays.fill(rowToken, -1);
      for (int i = 0; i < q; i++) {
        for (int k = 0; k < shape.topk(); k++) {
          int row = pairRows[i * shape.topk() + k];
          if (row >= 0 && row < n) rowToken[row] = pairToken[i];
        }
      }
    }
    return Dispatched.of(this, new CudaRows(d, host, weights, rowToken, pairSrc, pairToken, counts, rank));
  }

  @Override
  public void combine(Dispatched d, RowBuffer y, RowBuffer out) {
    hostCombine(d, y, out, false, null);
  }

  /** {@code callerProblem}: what the caller found wrong on this rank (null if nothing), announced like the rest. */
  private void hostCombine(Dispatched d, RowBuffer y, RowBuffer out, boolean async, String callerProblem) {
    String me = "rank " + rank + ": ";
    Dispatched.Rows rows = d == null ? null : d.rowsOf(this);
    DeviceDispatched dd = rows instanceof CudaRows cr ? cr.device : null;
    String problem = closed ? me + "the communicator is closed"
        : d == null ? me + "the dispatch result is null"
        : dd == null ? me + "the dispatch result belongs to another communicator"
        : CallChecks.handle(me, this, generation, world.variant(), dd);
    if (problem == null) problem = CallChecks.hostCombine(shape, rank, closed, y, out, dd.receivedRows(), dd.tokens());
    if (problem == null) problem = callerProblem;
    if (!async && lane.pending() > 0) {
      if (problem == null) problem = me + "a synchronous call while " + lane.pending() + " async call(s) are pending";
      lane.awaitIdle(); // they wait for peers in collectives of their own, which this refusal's must not meet
    }
    DeviceRows dy = null;
    DeviceRows dout = null;
    if (problem == null) {
      try {
        ensureStaging();
        w.synchronize(rank);
        byte[] b = bytes(y.segment(), y.offset(), dd.receivedRows() * y.rowBytes());
        NativeKernels.bytesToDevice(b, 0, b.length, stY);
        dy = DeviceRows.of(stY, dd.receivedRows(), shape.hidden(), shape.combineType());
        dout = DeviceRows.of(stOut, dd.tokens(), shape.hidden(), shape.combineType());
      } catch (RuntimeException e) {
        problem = me + "the host path's upload failed: " + e;
      }
    }
    combine(dd, dy, dout, null, problem, true);
    w.synchronize(rank);
    byte[] o = new byte[Math.toIntExact(dout.byteSize())];
    NativeKernels.bytesFromDevice(stOut, o, 0, o.length);
    MemorySegment.copy(o, 0, out.segment(), ValueLayout.JAVA_BYTE, out.offset(), o.length);
  }

  private static byte[] bytes(MemorySegment s, long offset, long n) {
    return s.asSlice(offset, n).toArray(ValueLayout.JAVA_BYTE);
  }

  private void ensureStaging() {
    if (staging != null) return;
    DeviceArena a = new DeviceArena();
    boolean ok = false;
    try {
      long t = shape.maxTokens();
      stX = a.alloc(t * shape.rowBytes());
      stScales = shape.scaleCols() > 0 ? a.alloc(4L * t * shape.scaleCols()) : 0L;
      stIdx = a.alloc(4L * t * shape.topk());
      stW = a.alloc(4L * t * shape.topk());
      stY = a.alloc((long) shape.receiveRows() * shape.combineRowBytes());
      stOut = a.alloc(t * shape.combineRowBytes());
      ok = true;
    } finally {
      if (!ok) a.close();
    }
    staging = a;
  }

  /**
   * Peer memory for the shuffled combine's home rows, which the targets that reach this rank
   * (its machine) read directly; null where the transport has none (every rank alike: the
   * transport's kind decides), and the homes then send their rows instead.
   */
  private static PeerMemory sharedHome(Transport transport, long bytes) {
    try {
      return transport.peerMemory(bytes);
    } catch (UnsupportedOperationException e) {
      return null;
    }
  }

  /**
   * Host rows a shuffled combine combines into before delivery, allocated on the first one: in
   * their own arena when ranks share this JVM or the transport has no peer memory, else carved
   * from {@link #shufflePeer}.
   */
  private Arena shuffleArena;
  private final PeerMemory shufflePeer;
  private RowBuffer shuffleHome;

  /**
   * The host path's combine into host rows at home, then the delivery every backend shares
   * ({@link ShuffledCombine#deliver}): targets read the homes' rows directly (this JVM's memory,
   * or shared memory between processes). For tests, selftest and bench, like every host-path call.
   */
  @Override
  public Arrivals combineShuffled(Dispatched d, RowBuffer y, int[] nextRank, RowBuffer into) {
    Dispatched.Rows rows = d == null ? null : d.rowsOf(this);
    int tokens = rows instanceof CudaRows cr ? cr.device.tokens() : 0;
    String problem = rows instanceof CudaRows ? ShuffledCombine.targetProblem(rank, ranks(), tokens, config(), nextRank, into) : null;
    if (shuffleHome == null) {
      shuffleArena = Arena.ofShared();
      shuffleHome = shufflePeer != null ? shufflePeer.rows(ShuffledCombine.homeRows(config()), shape.hidden(), shape.combineType())
          : RowBuffer.allocate(shuffleArena, ShuffledCombine.homeRows(config()), shape.hidden(), shape.combineType());
    }
    RowBuffer home = new RowBuffer(shuffleHome.segment(), shuffleHome.offset(), tokens, shape.hidden(), shape.combineType(), null);
    hostCombine(d, y, home, false, problem);
    if (shuffle == null) shuffle = new ShuffledCombine(transport, this::shufflePack);
    return shuffle.deliver(nextRank, into, home);
  }

  /** The delivery's scratch, made on the first shuffled combine. */
  private ShuffledCombine shuffle;

  /** Rows the delivery packs for targets that cannot read {@link #shuffleHome} (other machines), made on the first such call. */
  private RowBuffer shufflePack;

  private RowBuffer shufflePack() {
    if (shufflePack == null) {
      shufflePack = RowBuffer.allocate(shuffleArena, ShuffledCombine.homeRows(config()), shape.hidden(), shape.combineType());
    }
    return shufflePack;
  }

  @Override
  public CompletableFuture<Dispatched> dispatchAsync(RowBuffer x, Routing routing) {
    return lane.submit(() -> hostDispatch(x, routing, null, true));
  }

  @Override
  public CompletableFuture<Void> combineAsync(Dispatched d, RowBuffer y, RowBuffer out) {
    return lane.submit(() -> {
      hostCombine(d, y, out, true, null);
      return null;
    });
  }

  /**
   * Closes this rank: later calls fail naming it; frees the host path's staging. The ranks' device
   * buffers, streams and events belong to the world and go with {@link CudaWorld#close()}.
   */
  @Override
  public void close() {
    synchronized (this) {
      if (closed) return;
      closed = true;
    }
    lane.close(); // lets queued collectives finish: peers are waiting for them
    if (watch != null) watch.close(); // before the channel goes: the watch may abandon it
    RuntimeException err = null;
    if (staging != null) {
      err = Release.attempt(err, () -> w.synchronize(rank));
      DeviceArena a = staging;
      err = Release.attempt(err, a::close);
      staging = null;
    }
    if (hostArena != null) {
      hostArena.close();
      hostArena = null;
    }
    if (shuffleArena != null) {
      shuffleArena.close();
      shuffleArena = null;
    }
    if (shufflePeer != null) err = Release.attempt(err, shufflePeer::close);
    if (relay != null) {
      // peers store into the staging only within a combine, which this rank's stream waited for
      err = Release.attempt(err, () -> w.synchronize(rank));
      // between processes: unmap the peers' and wait until they unmapped this rank's; if that
      // is not confirmed, the relay slab and the channel's shared events stay until the process
      // exits (freeing memory a peer still maps is undefined)
      java.util.Arrays.fill(w.watched, null); // the peers' channel events close with the mappings
      RuntimeException unmapped = relayPeers == null ? null : Release.attempt(null, relayPeers::close);
      if (unmapped == null) {
        err = Release.attempt(err, channel::close);
        err = Release.attempt(err, relay::close);
      } else {
        // an NCCL communicator is aborted all the same: finishing it would wait for the peers
        err = Release.keep(err, unmapped);
        err = Release.attempt(err, channel::abandon);
      }
    }
    if (err != null) throw err;
  }
}
