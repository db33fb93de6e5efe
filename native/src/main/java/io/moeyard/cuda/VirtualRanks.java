package io.moeyard.cuda;

/**
 * R virtual ranks on one GPU: each rank's stream, the events other ranks wait for and its device
 * buffers; plus what the kernels index by rank (the expert map in CSR form and the tables of every
 * rank's buffer pointers). The communicator's own buffers never move after open, so their tables
 * are built once. The tables of receive rows are per rank ({@link #recvXTable}): an engine may give
 * each dispatch rows of its own, and each rank then rewrites its own table's entry for that
 * destination in stream order, as each process will hold its own table of peer addresses under
 * CUDA IPC.
 */
final class VirtualRanks {
  final KernelShape shape;
  final int nR;
  final int nS;
  final int nP;
  final int nK;
  final int nH;
  final long[] streams;
  /** Recorded once a destination's receive offsets are known. */
  final long[] evStage;
  /** Recorded once a rank has sent (stored into peers) what the phase needs. */
  final long[] evSend;
  /** Recorded once a rank's part of a call is done. */
  final long[] evDone;
  /** Recorded on the engine's stream when a rank enters a call: its stream waits for it. */
  final long[] evEntry;
  final RankBuffers[] buf;
  private final DeviceArena tables = new DeviceArena();
  final long mapOffsets;
  final long mapSlots;
  /** Per rank, the pointer of one of its buffers: what a kernel of rank r uses to store into rank d. */
  final long totalsOf;
  /** Per rank r: its table of every destination's receive rows / scales (device arrays of R pointers). */
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

  /** Creates every stream, event and buffer; on failure releases what it got and rethrows. */
  VirtualRanks(KernelShape shape, int layoutChunk) {
    this.shape = shape;
    this.nR = shape.ranks();
    this.nS = shape.slotsPerRank();
    this.nP = shape.slots();
    this.nK = shape.topk();
    this.nH = shape.hidden();
    this.streams = new long[nR];
    this.evStage = new long[nR];
    this.evSend = new long[nR];
    this.evDone = new long[nR];
    this.evEntry = new long[nR];
    this.recvXTable = new long[nR];
    this.recvScalesTable = new long[nR];
    this.recvXEntry = new long[nR][nR];
    this.recvScalesEntry = new long[nR][nR];
    this.buf = new RankBuffers[nR];
    try {
      for (int r = 0; r < nR; r++) {
        streams[r] = NativeKernels.streamCreate();
        evStage[r] = NativeKernels.eventCreate(false);
        evSend[r] = NativeKernels.eventCreate(false);
        evDone[r] = NativeKernels.eventCreate(false);
        evEntry[r] = NativeKernels.eventCreate(false);
      }
      for (int r = 0; r < nR; r++) {
        buf[r] = new RankBuffers(shape, layoutChunk);
      }
      mapOffsets = tables.ints(shape.csrOffsets());
      mapSlots = tables.ints(shape.csrSlots());
      totalsOf = tableOf(b -> b.totals);
      for (int r = 0; r < nR; r++) {
        for (int d = 0; d < nR; d++) {
          recvXEntry[r][d] = buf[d].recvX;
          recvScalesEntry[r][d] = buf[d].recvScales;
        }
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
      RuntimeException err = destroyStreams(releaseMemory(null));
      if (err != null) {
        e.addSuppressed(err);
      }
      throw e;
    }
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
    for (long st : streams) {
      if (st != 0) err = Release.attempt(err, () -> NativeKernels.streamSynchronize(st));
    }
    return err;
  }

  /** Frees every buffer and table. */
  RuntimeException releaseMemory(RuntimeException err) {
    for (RankBuffers b : buf) {
      if (b != null) err = Release.attempt(err, b::close);
    }
    return Release.attempt(err, tables::close);
  }

  /** Destroys every event and stream that exists. */
  RuntimeException destroyStreams(RuntimeException err) {
    for (int r = 0; r < nR; r++) {
      long stage = evStage[r];
      long send = evSend[r];
      long done = evDone[r];
      long entry = evEntry[r];
      long st = streams[r];
      if (stage != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(stage));
      if (send != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(send));
      if (done != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(done));
      if (entry != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(entry));
      if (st != 0) err = Release.attempt(err, () -> NativeKernels.streamDestroy(st));
    }
    return err;
  }
}
