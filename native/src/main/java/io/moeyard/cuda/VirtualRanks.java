package io.moeyard.cuda;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.transport.Transport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The ranks of a world as this process sees them: each rank's device buffers and the events other
 * ranks wait for; for the ranks that run here, their streams; plus what the kernels index by rank
 * (the expert map in CSR form and the tables of every rank's buffer pointers). The communicator's
 * own buffers never move after open, so their tables are built once.
 *
 * <p>Two shapes, one for each way ranks are placed. Virtual ranks: all R in this process on one
 * GPU ({@link #me} = -1). The tables of receive rows are then per rank ({@link #recvXTable}): an
 * engine may give each dispatch rows of its own, and each rank rewrites its own table's entry for
 * that destination in stream order. One rank per process ({@link #me} = this process's rank): the
 * peers' buffers are this process's CUDA IPC mappings of their slabs and their events are opened
 * IPC events ({@link CudaIpc}); only this rank has a stream here. The kernels cannot tell the two
 * apart: they see tables of addresses either way.
 */
final class VirtualRanks {
  final KernelShape shape;
  /** The one rank that runs in this process, or -1 when every rank does. */
  final int me;
  final int nR;
  final int nS;
  final int nP;
  final int nK;
  final int nH;
  /** The streams of the ranks that run here (0 for the others). */
  final long[] streams;
  /** Recorded once a destination's receive offsets are known. */
  final long[] evStage;
  /** Recorded once a rank has sent (stored into peers) what the phase needs. */
  final long[] evSend;
  /** Recorded once a rank's part of a call is done. */
  final long[] evDone;
  /**
   * Recorded by rank 0 after a timed call's start event (timing events cannot cross processes, so
   * the other ranks' streams wait for this one instead).
   */
  final long[] evGate;
  /** Recorded on the engine's stream when a rank enters a call: its stream waits for it (ranks that run here). */
  final long[] evEntry;
  final RankBuffers[] buf;
  private final DeviceArena tables = new DeviceArena();
  /** One rank per process: the peers' slabs and events as mapped here, and their release. */
  private final CudaIpc peers;
  /** One rank per process: how long a wait for this rank's stream may take ({@link #synchronize}). */
  private final long deviceTimeoutNanos;
  /** One rank per process: the world's transport, whose {@link Transport#checkPeers} a stream wait polls (null otherwise). */
  private final Transport transport;
  /** How often a stream wait asks the transport about its peers: often enough, and a system call or two each. */
  static final long WATCH_NANOS = 20_000_000;
  /**
   * Which ranks this process reaches through device memory (its machine's; all for virtual ranks).
   * The others' buffers are never addressed and their events never waited for: what crosses to
   * them goes through the node-level path's channel.
   */
  final boolean[] reach;
  /** Whether some rank is out of reach (ranks on more than one machine). */
  final boolean machines;
  /**
   * With ranks out of reach: every rank's layout totals as the dispatch announced them, uploaded
   * here (the receive offsets read every source's totals, and those of another machine cannot be
   * read in place); 0 otherwise.
   */
  private final long hostTotals;
  final long mapOffsets;
  final long mapSlots;
  /** Per rank, the pointer of one of its buffers: what a kernel of rank r uses to store into rank d. */
  final long totalsOf;
  /** Per rank r that runs here: its table of every destination's receive rows / scales (device arrays of R pointers). */
  final long[] recvXTable;
  final long[] recvScalesTable;
  /** What each rank's tables hold now ([r][d]); only its own rank's thread reads or writes row r. */
  final long[][] recvXEntry;
  final long[][] recvScalesEntry;
  final long recvWOf;
  final long rowBaseOf;
  final long pairBaseOf;
  final long pairSrcOf;
  final long pairHomeOf;
  final long pairTokenOf;
  final long pairRowsOf;
  final long partialsOf;

  /** R virtual ranks: creates every stream, event and buffer; on failure releases what it got and rethrows. */
  VirtualRanks(KernelShape shape, int layoutChunk) {
    this(shape, layoutChunk, null, Duration.ZERO, null);
  }

  /**
   * With {@code transport} a process world's (every rank of it calls this, in the same place of its
   * collective order): this process's rank, its peers mapped through CUDA IPC. Every rank fails
   * alike, naming the rank that could not allocate, export or map, and releases what it got.
   */
  VirtualRanks(KernelShape shape, int layoutChunk, Transport transport, Duration deviceTimeout, boolean[] reach) {
    this.shape = shape;
    this.reach = new boolean[shape.ranks()];
    for (int q = 0; q < this.reach.length; q++) this.reach[q] = reach == null || reach[q];
    boolean out = false;
    for (boolean b : this.reach) out |= !b;
    this.machines = out;
    this.deviceTimeoutNanos = deviceTimeout.toNanos();
    this.transport = transport;
    this.me = transport == null ? -1 : transport.rank();
    this.nR = shape.ranks();
    this.nS = shape.slotsPerRank();
    this.nP = shape.slots();
    this.nK = shape.topk();
    this.nH = shape.hidden();
    this.streams = new long[nR];
    this.evStage = new long[nR];
    this.evSend = new long[nR];
    this.evDone = new long[nR];
    this.evGate = new long[nR];
    this.evEntry = new long[nR];
    this.recvXTable = new long[nR];
    this.recvScalesTable = new long[nR];
    this.recvXEntry = new long[nR][nR];
    this.recvScalesEntry = new long[nR][nR];
    this.buf = new RankBuffers[nR];
    this.watched = new long[nR][];
    CudaIpc mapped = null;
    try {
      if (transport == null) {
        for (int r = 0; r < nR; r++) createLocal(r, false, layoutChunk);
        evGate[0] = NativeKernels.eventCreate(false);
      } else {
        mapped = joinPeers(transport, layoutChunk);
      }
      this.peers = mapped;
      mapOffsets = tables.ints(shape.csrOffsets());
      mapSlots = tables.ints(shape.csrSlots());
      int nb = nP + nR;
      hostTotals = machines ? tables.alloc(4L * nR * nb) : 0L;
      long[] totalsAt = new long[nR];
      for (int q = 0; q < nR; q++) totalsAt[q] = this.reach[q] ? buf[q].totals : hostTotals + 4L * q * nb;
      totalsOf = tables.longs(totalsAt);
      for (int r = 0; r < nR; r++) {
        for (int d = 0; d < nR; d++) {
          recvXEntry[r][d] = buf[d].recvX;
          recvScalesEntry[r][d] = buf[d].recvScales;
        }
        if (!local(r)) continue;
        recvXTable[r] = tables.longs(recvXEntry[r]);
        recvScalesTable[r] = tables.longs(recvScalesEntry[r]);
      }
      recvWOf = tableOf(b -> b.recvW);
      rowBaseOf = tableOf(b -> b.rowBase);
      pairBaseOf = tableOf(b -> b.pairBase);
      pairSrcOf = tableOf(b -> b.pairSrc);
      pairHomeOf = tableOf(b -> b.pairHome);
      pairTokenOf = tableOf(b -> b.pairToken);
      pairRowsOf = tableOf(b -> b.pairRows);
      partialsOf = tableOf(b -> b.partials);
    } catch (RuntimeException e) {
      if (transport != null && mapped != null) {
        // the peers are past the exchange: they must hear of this failure, not wait for the timeout
        transport.abort(e);
      }
      RuntimeException err = destroyStreams(releaseMemory(null, mapped));
      if (err != null) e.addSuppressed(err);
      throw e;
    }
  }

  /** Rank r's stream, events and slab, made here; interprocess events when peers in other processes wait for them. */
  private void createLocal(int r, boolean interprocess, int layoutChunk) {
    streams[r] = NativeKernels.streamCreate();
    evStage[r] = interprocess ? NativeKernels.eventCreateInterprocess() : NativeKernels.eventCreate(false);
    evSend[r] = interprocess ? NativeKernels.eventCreateInterprocess() : NativeKernels.eventCreate(false);
    evDone[r] = interprocess ? NativeKernels.eventCreateInterprocess() : NativeKernels.eventCreate(false);
    if (interprocess) evGate[r] = NativeKernels.eventCreateInterprocess();
    evEntry[r] = NativeKernels.eventCreate(false);
    buf[r] = RankBuffers.allocate(shape, layoutChunk);
  }

  /** The events a rank shares with its peers, in {@link CudaIpc#event} order. */
  private long[] shared(int r) {
    return new long[] {evStage[r], evSend[r], evDone[r], evGate[r]};
  }

  /** This process's rank made here, then every peer's slab and events mapped (all ranks alike, or all fail). */
  private CudaIpc joinPeers(Transport transport, int layoutChunk) {
    String problem = null;
    try {
      createLocal(me, true, layoutChunk);
    } catch (RuntimeException e) {
      problem = "rank " + me + " could not set up its device memory, streams and events: " + e.getMessage();
    }
    Object[] verdicts = transport.allGather(problem);
    for (Object v : verdicts) {
      if (v != null) throw new VerdictException((String) v);
    }
    CudaIpc ipc = CudaIpc.open(transport, buf[me].base, buf[me].bytes, shared(me), reach);
    // every rank's size, those out of reach included, so that every rank reaches the same verdict
    // (and the same closing barrier)
    long[] sizes = new long[nR];
    for (int q = 0; q < nR; q++) sizes[q] = ipc.bytes(q);
    String bad = differentSize(sizes);
    if (bad != null) {
      CudaException e = new VerdictException(bad); // every rank computes it from the same sizes
      try {
        ipc.close();
      } catch (RuntimeException c) {
        e.addSuppressed(c);
      }
      throw e;
    }
    for (int q = 0; q < nR; q++) {
      if (q == me) continue;
      if (!reach[q]) {
        // never addressed: the offsets alone, so that a stray use faults instead of hitting memory
        buf[q] = RankBuffers.view(shape, layoutChunk, 0L);
        continue;
      }
      buf[q] = RankBuffers.view(shape, layoutChunk, ipc.address(q));
      evStage[q] = ipc.event(q, 0);
      evSend[q] = ipc.event(q, 1);
      evDone[q] = ipc.event(q, 2);
      evGate[q] = ipc.event(q, 3);
    }
    return ipc;
  }

  /** The first rank whose slab size differs from rank 0's, as a message (null: all alike). */
  static String differentSize(long[] bytes) {
    for (int q = 1; q < bytes.length; q++) {
      if (bytes[q] != bytes[0]) {
        return "rank " + q + "'s device memory has " + bytes[q] + " bytes, rank 0's " + bytes[0]
            + ": the ranks were opened for different shapes";
      }
    }
    return null;
  }

  /**
   * With ranks on more than one machine: uploads the totals the sources out of reach announced
   * ({@code totals[q]}: P + R counts), before the receive offsets read them. Synchronous, after the
   * layout's wait: the previous call's reads of these rows are done.
   */
  void uploadTotals(int[][] totals) {
    if (!machines) return;
    int nb = nP + nR;
    for (int q = 0; q < nR; q++) {
      if (!reach[q]) NativeKernels.intsToDevice(totals[q], 0, nb, hostTotals + 4L * q * nb);
    }
  }

  /** {@code st} waits for each rank's {@code events} entry that this process holds (those out of reach are 0). */
  static void waitAll(long st, long[] events) {
    for (long e : events) {
      if (e != 0) NativeKernels.streamWaitEvent(st, e);
    }
  }

  /**
   * The rank whose stream holds the device clock of this rank's machine: the first rank within
   * reach (rank 0 where every rank is, as in one machine's world). Across machines each machine
   * times itself: events cannot cross machines.
   */
  int clockRank() {
    for (int q = 0; q < nR; q++) if (reach[q]) return q;
    throw new IllegalStateException("no rank within reach");
  }

  /** Whether rank r runs in this process (has a stream here). */
  boolean local(int r) {
    return me < 0 || r == me;
  }

  private interface PtrOf {
    long of(RankBuffers b);
  }

  private long tableOf(PtrOf f) {
    long[] p = new long[nR];
    for (int r = 0; r < nR; r++) {
      p[r] = f.of(buf[r]);
    }
    return tables.longs(p);
  }

  /**
   * Points rank r's tables at destination d's receive rows and scales for the next dispatch, in
   * stream order on rank r's stream (a no-op when they already do).
   */
  void pointReceive(int r, int d, long rows, long scales) {
    if (recvXEntry[r][d] != rows) {
      NativeKernels.storePointer(recvXTable[r], d, rows, streams[r]);
      recvXEntry[r][d] = rows;
    }
    if (recvScalesEntry[r][d] != scales) {
      NativeKernels.storePointer(recvScalesTable[r], d, scales, streams[r]);
      recvScalesEntry[r][d] = scales;
    }
  }

  /** The rank whose buffers {@code [address, address + bytes)} meets, or -1 (-2: the shared tables). */
  int ownerOf(long address, long bytes) {
    for (int r = 0; r < nR; r++) {
      if (buf[r] != null && buf[r].overlaps(address, bytes)) return r;
    }
    return tables.overlaps(address, bytes) ? -2 : -1;
  }

  /** Waits for every stream that exists; the first failure is returned, later ones suppressed on it. */
  RuntimeException synchronizeAll(RuntimeException err) {
    for (int r = 0; r < nR; r++) {
      int q = r;
      if (streams[r] != 0) err = Release.attempt(err, () -> synchronize(q));
    }
    return err;
  }

  /**
   * Waits until rank r's stream is done. Virtual ranks wait plainly. With one rank per process the
   * stream may be waiting for a peer process's event, and a peer that died mid-call never records
   * it: so the wait polls, asks the transport about the peers every {@link #WATCH_NANOS}
   * ({@link Transport#checkPeers}: a peer found dead or an aborted world ends the wait at once,
   * see {@link #peerFailure}), and after the device timeout it throws a
   * {@link CollectiveTimeoutException} naming the peers whose events have not fired.
   */
  void synchronize(int r) {
    long st = streams[r];
    if (me < 0) {
      NativeKernels.streamSynchronize(st);
      return;
    }
    HostWait.until(() -> NativeKernels.streamQuery(st), System.nanoTime() + deviceTimeoutNanos, WATCH_NANOS,
        () -> watchPeers(transport, r), () -> stalled(r));
  }

  /**
   * {@code transport}'s look at the world while rank r's stream is not done. What it finds ends
   * the wait ({@link #peerFailure}); a dead or gone peer also aborts the world here, so that the
   * others hear it at once whichever transport found it (a second abort of a failed world is
   * harmless: the first one's message stands).
   */
  static void watchPeers(Transport transport, int r) {
    try {
      transport.checkPeers();
    } catch (CollectiveException e) {
      CollectiveException f = peerFailure(r, e);
      if (f instanceof CollectiveTimeoutException) {
        try {
          transport.abort(f);
        } catch (RuntimeException a) {
          f.addSuppressed(a);
        }
      }
      throw f;
    }
  }

  /**
   * What {@link Transport#checkPeers} found while rank r's stream waited, as the wait's failure
   * (the finding chained as its cause): a {@link CollectiveTimeoutException} naming the same
   * ranks for a peer found dead or gone, a {@link CollectiveException} for an aborted world.
   */
  static CollectiveException peerFailure(int r, CollectiveException found) {
    String msg = "rank " + r + ": its stream was waiting when the transport found the world failed: " + found.getMessage();
    if (found instanceof CollectiveTimeoutException t) {
      CollectiveTimeoutException e = new CollectiveTimeoutException(msg, t.missingRanks());
      e.initCause(found);
      return e;
    }
    return new CollectiveException(msg, found);
  }

  /**
   * Other events of peer q this rank's stream may wait for (the relay channel's, opened here),
   * so that a stall inside the channel names its peer too; set by the communicator, read by
   * {@link #stalled}.
   */
  final long[][] watched;

  private CollectiveTimeoutException stalled(int r) {
    return stalled(r, deviceTimeoutNanos, pending(r, reach, q -> {
      try {
        if (watched[q] != null) {
          for (long e : watched[q]) if (!fired(e)) return false;
        }
        return fired(evStage[q]) && fired(evSend[q]) && fired(evDone[q]) && fired(evGate[q]);
      } catch (RuntimeException e) {
        return false; // an event of a process that is gone
      }
    }));
  }

  /** The device timeout's failure of rank r's wait: the peers whose events have not fired are {@code pending}. */
  static CollectiveTimeoutException stalled(int r, long deviceTimeoutNanos, List<Integer> pending) {
    String ms = deviceTimeoutNanos / 1_000_000 + " ms";
    return new CollectiveTimeoutException("rank " + r + ": its stream did not finish within " + ms
        + (pending.isEmpty() ? " (no peer's event is pending: the engine's own work before the call, or a fault)"
            : "; it waits for rank(s) " + pending + ", whose events have not fired (a peer process that died or"
            + " stopped mid-call)"), pending);
  }

  /** An event that is not held here (0: out of reach, or one that is never shared) waits for nothing. */
  private static boolean fired(long event) {
    return event == 0 || NativeKernels.eventQuery(event);
  }

  /**
   * The peers of rank r within reach whose events have not all fired ({@code fired}): those out
   * of reach are never waited for, so they are never the ones a stall waits for.
   */
  static List<Integer> pending(int r, boolean[] reach, java.util.function.IntPredicate fired) {
    List<Integer> pending = new ArrayList<>();
    for (int q = 0; q < reach.length; q++) {
      if (q != r && reach[q] && !fired.test(q)) pending.add(q);
    }
    return pending;
  }

  /**
   * Frees every buffer and table of this process; one rank per process first releases its peers'
   * mappings and waits (a barrier) until every peer released its own, so that no slab is freed
   * while mapped.
   */
  RuntimeException releaseMemory(RuntimeException err) {
    return releaseMemory(err, peers);
  }

  private RuntimeException releaseMemory(RuntimeException err, CudaIpc ipc) {
    if (ipc != null) {
      RuntimeException closing = Release.attempt(null, ipc::close);
      if (closing != null) {
        // the closing barrier did not confirm that every peer unmapped this rank: freeing memory
        // a peer still maps is undefined, so the slab and the shared events stay until the
        // process exits
        peersMayMap = true;
        err = Release.keep(err, closing);
      }
    }
    for (int r = 0; r < nR; r++) {
      RankBuffers b = buf[r];
      if (b != null && local(r) && !(peersMayMap && r == me)) err = Release.attempt(err, b::close);
    }
    return Release.attempt(err, tables::close);
  }

  /** Set when a closing barrier failed: this rank's slab and shared events are left to the process's exit. */
  private boolean peersMayMap;

  /** Destroys every event and stream made here (the peers' opened events go with their mappings). */
  RuntimeException destroyStreams(RuntimeException err) {
    for (int r = 0; r < nR; r++) {
      if (!local(r)) continue;
      long[] events = peersMayMap && r == me ? new long[] {evEntry[r]}
          : new long[] {evStage[r], evSend[r], evDone[r], evGate[r], evEntry[r]};
      for (long ev : events) {
        if (ev != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(ev));
      }
      long st = streams[r];
      if (st != 0) err = Release.attempt(err, () -> NativeKernels.streamDestroy(st));
    }
    return err;
  }
}
