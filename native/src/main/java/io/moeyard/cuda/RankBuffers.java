package io.moeyard.cuda;

/**
 * One rank's device memory (what the communicator needs besides the engine's rows: the routing's
 * copy, the layout, receive rows, pair records, staging), allocated once at open for the most a call can need (the shape's
 * maxTokens and receive rows) and reused by every call, so a steady-state call allocates nothing.
 * Peers store into these buffers directly. A call whose counts do not fit fails before any kernel
 * writes ({@link CallChecks#receive}).
 */
final class RankBuffers {
  private final DeviceArena mem = new DeviceArena();

  /** Rows the receive buffers hold. */
  final int receiveRows;
  /** Token-rank pairs the pair records hold: each pair brings at least one row, and a source sends a token once. */
  final int receivePairs;

  // as a source: the routing (the communicator's own copy) and the layout
  final long topkIdx;
  final long topkW;
  final long slotIds;
  final long pos;
  final long pairPos;
  final long pairIdx;
  final long inRank;
  final long pairOffset;
  final long chunkCounts;
  final long chunkBase;
  final long totals;
  final long slotPrefix;
  final long chunkPairBase;
  // as a destination: received rows, pair records, offsets
  final long recvX;
  final long recvScales;
  final long recvW;
  final long pairSrc;
  final long pairHome;
  final long pairToken;
  final long pairRows;
  final long recvCounts;
  final long slotTotal;
  final long rowBase;
  final long slotBase;
  final long pairBase;
  final long stagingPrefix;
  // the unfused baseline: rank-major permuted rows (source), [src][slot] staging (destination)
  final long permX;
  final long permScales;
  final long permW;
  final long stagingX;
  final long stagingScales;
  final long stagingW;
  // combine
  final long partials;
  final long stagingY;
  final long returnY;

  /** Allocates everything; on failure frees what it got and rethrows. */
  RankBuffers(KernelShape shape, int layoutChunk) {
    int nR = shape.ranks();
    int nS = shape.slotsPerRank();
    int nP = shape.slots();
    int nK = shape.topk();
    int sc = shape.scaleCols();
    long rb = shape.rowBytes();
    long cb = shape.combineRowBytes();
    long t = shape.maxTokens();
    long tk = t * nK;
    long rows = shape.receiveRows();
    receiveRows = shape.receiveRows();
    receivePairs = (int) Math.min(rows, (long) nR * shape.maxTokens());
    long pairs = receivePairs;
    // a token forms at most one pair per rank, and at most one per selection
    long homePairs = t * Math.min(nR, nK);
    int nb = nP + nR;
    long chunks = Math.max(1, (t + layoutChunk - 1) / layoutChunk);
    boolean ok = false;
    try {
      topkIdx = mem.alloc(4L * tk);
      topkW = mem.alloc(4L * tk);
      slotIds = mem.alloc(4L * tk);
      pos = mem.alloc(4L * tk);
      pairPos = mem.alloc(4L * tk);
      pairIdx = mem.alloc(4L * tk);
      inRank = mem.alloc(t * nR);
      pairOffset = mem.alloc(4L * (t + 1));
      chunkCounts = mem.alloc(4L * chunks * nb);
      chunkBase = mem.alloc(4L * chunks * nb);
      // one more int: the routing check's first bad entry, read back with the counts
      totals = mem.alloc(4L * (nb + 1));
      slotPrefix = mem.alloc(4L * (nP + 1));
      chunkPairBase = mem.alloc(4L * (chunks + 1));

      recvX = mem.alloc(rows * rb);
      recvScales = sc > 0 ? mem.alloc(4L * rows * sc) : 0L;
      recvW = mem.alloc(4L * rows);
      pairSrc = mem.alloc(4L * pairs);
      pairHome = mem.alloc(4L * pairs);
      pairToken = mem.alloc(4L * pairs);
      pairRows = mem.alloc(4L * pairs * nK);
      recvCounts = mem.alloc(4L * nR * nS);
      slotTotal = mem.alloc(4L * nS);
      rowBase = mem.alloc(4L * nR * nS);
      slotBase = mem.alloc(4L * (nS + 1));
      pairBase = mem.alloc(4L * (nR + 1));
      stagingPrefix = mem.alloc(4L * (nR * nS + 1));

      permX = mem.alloc(tk * rb);
      permScales = sc > 0 ? mem.alloc(4L * tk * sc) : 0L;
      permW = mem.alloc(4L * tk);
      stagingX = mem.alloc(rows * rb);
      stagingScales = sc > 0 ? mem.alloc(4L * rows * sc) : 0L;
      stagingW = mem.alloc(4L * rows);

      partials = mem.alloc(homePairs * cb);
      stagingY = mem.alloc(rows * cb);
      returnY = mem.alloc(tk * cb);
      ok = true;
    } finally {
      if (!ok) {
        mem.close();
      }
    }
  }

  /** Whether {@code [address, address + bytes)} meets one of this rank's buffers. */
  boolean overlaps(long address, long bytes) {
    return mem.overlaps(address, bytes);
  }

  void close() {
    mem.close();
  }
}
