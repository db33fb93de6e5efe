package io.moeyard.cuda;

/**
 * One rank's device memory for the node-level path (more than one node, {@code nodePath RELAY}),
 * allocated once when its communicator is built, for the most a call can need (maxTokens per
 * rank), and freed by {@link #close()}: the one owner. Per remote node m it keeps one slot
 * ({@link #slot}) of each: the message it sends to its relay there and the one it receives from
 * the rank of its local index there; as that rank's relay, the source's recomputed layout and
 * the staging of the partials its node's ranks return for it; the node partials it sends back and
 * those it receives as a home. Since every rank's tokens are at most maxTokens (checked before any
 * kernel), every slot holds whatever a call brings.
 *
 * <p>All of it is one allocation carved at offsets that depend only on the shape (the same on every
 * rank: a peer finds another rank's staging at this rank's offset of it), so that one CUDA IPC
 * handle shares it with the other rank processes of a machine (their staging is stored into, their
 * messages copied out of).
 */
final class RelayBuffers {
  /** The owned slab (null while only measuring). */
  private final DeviceArena mem;
  /** The slab's first byte and size. */
  final long base;
  final long bytes;
  private long cursor;

  final int nodes;
  final int node;
  final int localRanks;
  /** Tokens per slot (maxTokens, at least 1). */
  final int slotTokens;
  /** Bytes of one message slot: a message of {@link #slotTokens} tokens, every one carried, 256-aligned. */
  final long slotBytes;
  /** Staging rows per relayed source: each token brings at most min(topk, localRanks) partials. */
  final int stagingPerSource;

  // as a source: token t's row in its message to node m, and tokens per node
  final long nodeRow;
  final long nodeCounts;
  final long sendArea;
  final long recvArea;
  // as a relay, per slot: the relayed source's layout, recomputed from the routing it sent
  final long[] slotIds;
  final long[] pos;
  final long[] pairPos;
  final long[] pairIdx;
  final long[] pairOffset;
  final long[] totals;
  final long[] slotPrefix;
  final long[] chunkPairBase;
  final long[] inRank;
  final long[] srcNodeRow;
  final long[] srcNodeCounts;
  /** The layout's per-chunk scratch, shared by the slots (their layouts run one after another on one stream). */
  final long chunkCounts;
  final long chunkBase;
  // combine
  final long staging;
  final long nodeSend;
  final long nodeRecv;

  /** This dispatch: tokens of the source relayed in each slot, or -1 when it sent nothing here. */
  final int[] relayedTokens;
  /** A call's channel arguments and staging table (host, per rank), reused by every call. */
  final long[] sendAt;
  final long[] sendBytes;
  final long[] recvAt;
  final long[] recvBytes;
  final long[] stageRows;
  final int[] stageRow;

  /** Allocates the slab (one {@code cudaMalloc}) for rank {@code rank}; freed by {@link #close()}. */
  static RelayBuffers allocate(KernelShape shape, int rank, int layoutChunk) {
    long bytes = new RelayBuffers(shape, rank, layoutChunk, 256, null).bytes; // offsets only: nothing touched
    DeviceArena mem = new DeviceArena();
    return new RelayBuffers(shape, rank, layoutChunk, mem.alloc(bytes), mem);
  }

  private long take(long n) {
    long p = cursor;
    cursor += align256(n);
    return p;
  }

  private RelayBuffers(KernelShape shape, int rank, int layoutChunk, long base, DeviceArena mem) {
    this.mem = mem;
    this.base = base;
    this.cursor = base;
    int nR = shape.ranks();
    int nK = shape.topk();
    int nP = shape.slots();
    this.localRanks = shape.localRanks();
    this.nodes = nR / localRanks;
    this.node = rank / localRanks;
    this.slotTokens = Math.max(1, shape.maxTokens());
    long t = slotTokens;
    long tk = t * nK;
    this.slotBytes = align256(messageBytes(slotTokens, nK, slotTokens, shape.rowBytes(), shape.scaleCols()));
    this.stagingPerSource = slotTokens * Math.min(nK, localRanks);
    int remote = nodes - 1;
    int nb = nP + nR;
    long chunks = Math.max(1, (t + layoutChunk - 1) / layoutChunk);
    long cb = shape.combineRowBytes();
    this.slotIds = new long[remote];
    this.pos = new long[remote];
    this.pairPos = new long[remote];
    this.pairIdx = new long[remote];
    this.pairOffset = new long[remote];
    this.totals = new long[remote];
    this.slotPrefix = new long[remote];
    this.chunkPairBase = new long[remote];
    this.inRank = new long[remote];
    this.srcNodeRow = new long[remote];
    this.srcNodeCounts = new long[remote];
    this.relayedTokens = new int[remote];
    java.util.Arrays.fill(relayedTokens, -1);
    this.sendAt = new long[nR];
    this.sendBytes = new long[nR];
    this.recvAt = new long[nR];
    this.recvBytes = new long[nR];
    this.stageRows = new long[nR];
    this.stageRow = new int[nR];
    nodeRow = take(4L * t * nodes);
    nodeCounts = take(4L * nodes);
    sendArea = take(remote * slotBytes);
    recvArea = take(remote * slotBytes);
    // one part per array, a 256-aligned piece of it per slot
    perSlot(slotIds, 4L * tk);
    perSlot(pos, 4L * tk);
    perSlot(pairPos, 4L * tk);
    perSlot(pairIdx, 4L * tk);
    perSlot(pairOffset, 4L * (t + 1));
    perSlot(totals, 4L * nb);
    perSlot(slotPrefix, 4L * (nP + 1));
    perSlot(chunkPairBase, 4L * (chunks + 1));
    perSlot(inRank, t * nR);
    perSlot(srcNodeRow, 4L * t * nodes);
    perSlot(srcNodeCounts, 4L * nodes);
    chunkCounts = take(4L * chunks * nb);
    chunkBase = take(4L * chunks * nb);
    staging = take((long) remote * stagingPerSource * cb);
    nodeSend = take((long) remote * slotTokens * cb);
    nodeRecv = take((long) remote * slotTokens * cb);
    this.bytes = cursor - base;
  }

  /** {@code bytes} (rounded up to 256) per slot, one after another: {@code at[i]} is slot i's part. */
  private void perSlot(long[] at, long bytes) {
    long stride = align256(bytes);
    long first = take(stride * at.length);
    for (int i = 0; i < at.length; i++) at[i] = first + i * stride;
  }

  /** Node m's slot on this rank's node (m != node). */
  int slot(int m) {
    return m < node ? m : m - 1;
  }

  /**
   * Bytes of a message of {@code tokens} tokens of top-{@code topk} carrying {@code rows} rows: the
   * routing ({@code 8 x tokens x topk}, to 64 bytes), the rows, their FP8 scales; 0 without rows
   * (not sent). relay_math.cuh's msg_bytes.
   */
  static long messageBytes(int tokens, int topk, int rows, int rowBytes, int scaleCols) {
    return rows == 0 ? 0 : rowsAt(tokens, topk) + (long) rows * (rowBytes + 4L * scaleCols);
  }

  /** Where a message's rows start (relay_math.cuh's msg_rows_at). */
  static long rowsAt(int tokens, int topk) {
    return (8L * tokens * topk + 63) & -64L;
  }

  /** Where a message's FP8 scales start (relay_math.cuh's msg_scales_at). */
  static long scalesAt(int tokens, int topk, int rows, int rowBytes) {
    return rowsAt(tokens, topk) + (long) rows * rowBytes;
  }

  private static long align256(long b) {
    return (b + 255) & -256L;
  }

  /** Whether {@code [address, address + bytes)} meets one of these buffers. */
  boolean overlaps(long address, long bytes) {
    long end = address + Math.max(1, bytes);
    return address < base + this.bytes && base < end;
  }

  void close() {
    if (mem != null) mem.close();
  }
}
