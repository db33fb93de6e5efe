package io.moeyard.cuda;

/**
 * R virtual ranks on one GPU: each rank's stream, the events other ranks wait for, its device
 * buffers and the host copy of its layout counts; plus what the kernels index by rank (the expert
 * map in CSR form and the tables of every rank's buffer pointers). The buffers never move after
 * open, so the tables are built once and a call uploads nothing but data.
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
  final RankBuffers[] buf;
  final RankCounts[] counts;
  private final DeviceArena tables = new DeviceArena();
  final long mapOffsets;
  final long mapSlots;
  /** Per rank, the pointer of one of its buffers: what a kernel of rank r uses to store into rank d. */
  final long totalsOf;
  final long recvXOf;
  final long recvScalesOf;
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
    this.buf = new RankBuffers[nR];
    this.counts = new RankCounts[nR];
    try {
      for (int r = 0; r < nR; r++) {
        streams[r] = NativeKernels.streamCreate();
        evStage[r] = NativeKernels.eventCreate(false);
        evSend[r] = NativeKernels.eventCreate(false);
        evDone[r] = NativeKernels.eventCreate(false);
        counts[r] = new RankCounts();
      }
      for (int r = 0; r < nR; r++) {
        buf[r] = new RankBuffers(shape, layoutChunk);
      }
      mapOffsets = tables.ints(shape.csrOffsets());
      mapSlots = tables.ints(shape.csrSlots());
      totalsOf = tableOf(b -> b.totals);
      recvXOf = tableOf(b -> b.recvX);
      recvScalesOf = tableOf(b -> b.recvScales);
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

  /** Waits for every rank's stream. */
  void synchronize() {
    for (int r = 0; r < nR; r++) {
      NativeKernels.streamSynchronize(streams[r]);
    }
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
      long st = streams[r];
      if (stage != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(stage));
      if (send != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(send));
      if (done != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(done));
      if (st != 0) err = Release.attempt(err, () -> NativeKernels.streamDestroy(st));
    }
    return err;
  }
}
