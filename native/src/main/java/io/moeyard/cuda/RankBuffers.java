package io.moeyard.cuda;

/**
 * One rank's device memory (what the communicator needs besides the engine's rows: the routing's
 * copy, the layout, receive rows, pair records, staging), allocated once at open for the most a call can need (the shape's
 * maxTokens and receive rows) and reused by every call, so a steady-state call allocates nothing.
 * Peers store into these buffers directly. A call whose counts do not fit fails before any kernel
 * writes ({@link CallChecks#receive}).
 *
 * <p>All of it is one allocation (a "slab"), carved at fixed offsets that depend only on the shape:
 * a CUDA IPC handle names a whole allocation, so one handle shares a rank's buffers with the other
 * processes of a node, and each maps it as a {@link #view} at the same offsets. A view owns nothing.
 */
final class RankBuffers {
  /** Every buffer starts at a multiple of this (cfg::kBufferAlignment: the kernels' widest loads). */
  static final long ALIGN = 256;

  /** The owned slab, or null for a view of a peer's. */
  private final DeviceArena mem;
  /** The slab's first byte and size. */
  final long base;
  final long bytes;
  private long cursor;

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

  /** A slab of this rank's own for {@code shape}: one {@code cudaMalloc}, freed by {@link #close()}. */
  static RankBuffers allocate(KernelShape shape, int layoutChunk) {
    long bytes = new RankBuffers(shape, layoutChunk, ALIGN, null).bytes; // offsets only: nothing touched
    DeviceArena mem = new DeviceArena();
    return new RankBuffers(shape, layoutChunk, mem.alloc(bytes), mem);
  }

  /** A peer's slab as this process maps it at {@code base} (its CUDA IPC mapping); owns nothing. */
  static RankBuffers view(KernelShape shape, int layoutChunk, long base) {
    return new RankBuffers(shape, layoutChunk, base, null);
  }

  /** The next {@code n} bytes of the slab, aligned. */
  private long take(long n) {
    long p = cursor;
    cursor += (n + ALIGN - 1) & -ALIGN;
    return p;
  }

  private RankBuffers(KernelShape shape, int layoutChunk, long base, DeviceArena mem) {
    this.mem = mem;
    this.base = base;
    this.cursor = base;
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
    topkIdx = take(4L * tk);
    topkW = take(4L * tk);
    slotIds = take(4L * tk);
    pos = take(4L * tk);
    pairPos = take(4L * tk);
    pairIdx = take(4L * tk);
    inRank = take(t * nR);
    pairOffset = take(4L * (t + 1));
    chunkCounts = take(4L * chunks * nb);
    chunkBase = take(4L * chunks * nb);
    // one more int: the routing check's first bad entry, read back with the counts
    totals = take(4L * (nb + 1));
    slotPrefix = take(4L * (nP + 1));
    chunkPairBase = take(4L * (chunks + 1));

    recvX = take(rows * rb);
    recvScales = sc > 0 ? take(4L * rows * sc) : 0L;
    recvW = take(4L * rows);
    pairSrc = take(4L * pairs);
    pairHome = take(4L * pairs);
    pairToken = take(4L * pairs);
    pairRows = take(4L * pairs * nK);
    recvCounts = take(4L * nR * nS);
    slotTotal = take(4L * nS);
    rowBase = take(4L * nR * nS);
    slotBase = take(4L * (nS + 1));
    pairBase = take(4L * (nR + 1));
    stagingPrefix = take(4L * (nR * nS + 1));

    permX = take(tk * rb);
    permScales = sc > 0 ? take(4L * tk * sc) : 0L;
    permW = take(4L * tk);
    stagingX = take(rows * rb);
    stagingScales = sc > 0 ? take(4L * rows * sc) : 0L;
    stagingW = take(4L * rows);

    partials = take(homePairs * cb);
    stagingY = take(rows * cb);
    returnY = take(tk * cb);
    this.bytes = cursor - base;
  }

  /** Whether {@code [address, address + bytes)} meets one of this rank's buffers. */
  boolean overlaps(long address, long bytes) {
    long end = address + Math.max(1, bytes);
    return address < base + this.bytes && base < end;
  }

  /** Frees the slab of one's own (a view: nothing). */
  void close() {
    if (mem != null) mem.close();
  }
}
