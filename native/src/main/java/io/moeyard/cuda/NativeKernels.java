package io.moeyard.cuda;

/**
 * The JNI entry points of {@code libmoeyard_cuda.so} (jni_glue.cpp). Pointers, streams and events
 * are opaque {@code long} handles owned by the native library: allocate and free them only here.
 * Kernel launches are asynchronous on the given stream; a failed CUDA call throws
 * {@link CudaException}. Call {@link #ensureLoaded()} (or go through {@link CudaBackend}) first.
 *
 * <p>The {@code host*} methods run the index math of index_math.cuh on the host and need no GPU.
 */
public final class NativeKernels {

  private NativeKernels() {}

  /** Loads the library or throws {@link CudaUnavailableException} with the reason. */
  public static void ensureLoaded() {
    NativeLibrary.Status s = NativeLibrary.load();
    if (!s.loaded()) {
      throw new CudaUnavailableException(CudaAvailability.UNAVAILABLE + s.reason());
    }
  }

  // ---- status (never throw) ----
  public static native String version();

  public static native int runtimeVersion();

  /** null when libcuda.so.1 loads, else why not. */
  public static native String driverProbe();

  /** Device count, or -(cudaError_t) when cudaGetDeviceCount fails (no driver, no device). */
  public static native int deviceCount();

  public static native String errorString(int cudaError);

  public static native String deviceName(int device);

  /** {maxTopk, maxRanks, maxLayoutBins, layoutChunkTokens, rowThreads, fp8ScaleBlock, vecBytes}. */
  public static native int[] limits();

  // ---- device, memory, streams, events ----
  public static native void setDevice(int device);

  public static native void deviceSynchronize();

  /** Enqueues one thread that spins for {@code ns} nanoseconds on {@code stream} (see clock.cu). */
  public static native void hold(long ns, long stream);

  /** cudaMalloc; a zero-byte request still returns a valid pointer. */
  public static native long malloc(long bytes);

  public static native void free(long ptr);

  public static native void memsetAsync(long ptr, int value, long bytes, long stream);

  /** {free, total} bytes of the current device (cudaMemGetInfo). */
  public static native long[] memGetInfo();

  /**
   * {cudaMemoryType, device} of an address: 0 unregistered host memory, 1 registered host memory,
   * 2 device memory, 3 managed memory; device -1 when the address is unknown to CUDA.
   */
  public static native int[] pointerKind(long ptr);

  /** {@code table[index] = value} (a device array of pointers), in stream order. */
  public static native void storePointer(long table, int index, long value, long stream);

  /**
   * {@code *firstBad} (one uint32) = the smallest flat index {@code t * topk + k} whose expert id is
   * outside [-1, experts) or repeats an earlier one of row t, or whose routed weight is not finite;
   * 0xFFFFFFFF when there is none.
   */
  public static native void checkRouting(
      long topkIdx, long topkWeights, int tokens, int topk, int experts, long firstBad, long stream);

  public static native void copyDeviceToDeviceAsync(long dst, long src, long bytes, long stream);

  /**
   * Synchronous copy between any two addresses, device or host (a native MemorySegment's); the
   * direction is inferred. Returns once the bytes have landed (a pageable host-to-device copy
   * included), so that any stream may read them next.
   */
  public static native void copy(long dst, long src, long bytes);

  // Host <-> device, synchronous, in elements (off/len index the Java array).
  public static native void bytesToDevice(byte[] src, int off, int len, long dst);

  public static native void bytesFromDevice(long src, byte[] dst, int off, int len);

  public static native void shortsToDevice(short[] src, int off, int len, long dst);

  public static native void shortsFromDevice(long src, short[] dst, int off, int len);

  public static native void intsToDevice(int[] src, int off, int len, long dst);

  public static native void intsFromDevice(long src, int[] dst, int off, int len);

  public static native void floatsToDevice(float[] src, int off, int len, long dst);

  public static native void floatsFromDevice(long src, float[] dst, int off, int len);

  public static native void longsToDevice(long[] src, int off, int len, long dst);

  public static native void longsFromDevice(long src, long[] dst, int off, int len);

  public static native long streamCreate();

  public static native void streamDestroy(long stream);

  public static native void streamSynchronize(long stream);

  /** true when all work on the stream is done, false while some is pending. */
  public static native boolean streamQuery(long stream);

  public static native void streamWaitEvent(long stream, long event);

  public static native long eventCreate(boolean timing);

  public static native void eventDestroy(long event);

  public static native void eventRecord(long event, long stream);

  public static native void eventSynchronize(long event);

  /** true when done, false while pending. */
  public static native boolean eventQuery(long event);

  public static native float eventElapsedMs(long start, long end);

  // ---- CUDA IPC (CudaIpc) ----
  /** {@code sizeof(cudaIpcMemHandle_t)}. */
  public static native int ipcHandleBytes();

  /** null when device 0 can export an IPC handle, else why not (never throws). */
  public static native String ipcProbe();

  /** The IPC handle of the cudaMalloc allocation that starts at {@code ptr}. */
  public static native byte[] ipcGetMemHandle(long ptr);

  /** Maps another process's allocation into this one; released by {@link #ipcCloseMemHandle}. */
  public static native long ipcOpenMemHandle(byte[] handle);

  public static native void ipcCloseMemHandle(long ptr);

  /** An event other processes can wait for (no timing); destroyed by {@link #eventDestroy}. */
  public static native long eventCreateInterprocess();

  /** {@code sizeof(cudaIpcEventHandle_t)}. */
  public static native int ipcEventHandleBytes();

  /** The IPC handle of an event made by {@link #eventCreateInterprocess}. */
  public static native byte[] ipcGetEventHandle(long event);

  /** Another process's event, to wait for; destroyed by {@link #eventDestroy} before its owner destroys it. */
  public static native long ipcOpenEventHandle(byte[] handle);

  // ---- layout (per source rank) ----
  public static native void mapSlots(
      long topkIdx, int tokens, int topk, long expertOffsets, long expertSlots, int experts,
      int slotsPerRank, int localRanks, int rank, long slotIds, long stream);

  public static native void layoutCount(
      long slotIds, int tokens, int topk, int slotsPerRank, int slots, int ranks, long chunkCounts,
      long stream);

  public static native void layoutScan(
      long chunkCounts, int tokens, int slots, int ranks, long chunkBase, long totals,
      long slotPrefix, long chunkPairBase, long pairOffset, long stream);

  public static native void layoutPositions(
      long slotIds, int tokens, int topk, int slotsPerRank, int slots, int ranks, long chunkBase,
      long chunkPairBase, long pos, long pairPos, long pairIdx, long isTokenInRank,
      long pairOffset, long stream);

  /** On destination rank d; totalsPtrs: device array of R pointers to each rank's totals. */
  public static native void recvOffsets(
      long totalsPtrs, int d, int ranks, int slotsPerRank, int slots, long recvCounts,
      long slotTotal, long rowBase, long slotBase, long pairBase, long stagingPrefix, long stream);

  // ---- fused dispatch / combine ----
  public static native void dispatchFused(
      long x, long scales, int scaleCols, long topkWeights, long slotIds, long pos, long pairPos,
      long pairIdx, int tokens, int topk, int slotsPerRank, int ranks, int rank, int rowBytes,
      long recvXPtrs, long recvScalesPtrs, long recvWeightsPtrs, long rowBasePtrs,
      long pairBasePtrs, long pairSrcPtrs, long pairHomePtrs, long pairTokenPtrs,
      long pairRowsPtrs, long stream, int kernels);

  public static native void combineFused(
      int dtype, long y, long recvWeights, long pairSrc, long pairHome, long pairRows,
      int numPairs, int topk, int hidden, long partialPtrs, long stream, int kernels);

  /**
   * At home: each token's partials summed into {@code out}; on more than one node ({@code ranks >
   * localRanks}) each node's partials first (the runs found from the token's {@code slotIds} row).
   */
  public static native void combineHome(
      int dtype, long partials, long pairOffset, long slotIds, int tokens, int topk, int slotsPerRank,
      int ranks, int localRanks, int hidden, long out, long stream, int kernels);

  // The fused kernels take `kernels`: 0 the tuned kernels, 1 simple.cu's untuned ones (same bits),
  // >= 2 a combine tuning candidate (combine.cu); for side-by-side measurement of a tuning.

  // ---- unfused baseline ----
  public static native void permute(
      long x, long scales, int scaleCols, long topkWeights, long slotIds, long pos,
      long slotPrefix, int tokens, int topk, int rowBytes, long permX, long permScales,
      long permWeights, long stream);

  public static native void sortChunks(
      long stagingX, long stagingScales, long stagingWeights, long stagingPrefix, long rowBase,
      int ranks, int slotsPerRank, int numRows, int rowBytes, int scaleCols, long recvX,
      long recvScales, long recvWeights, long stream);

  public static native void sortChunksBack(
      long y, long stagingPrefix, long rowBase, int ranks, int slotsPerRank, int numRows,
      int rowBytes, long stagingY, long stream);

  public static native void unpermute(
      int dtype, long returnY, long topkWeights, long slotIds, long pos, long slotPrefix,
      int tokens, int topk, int slotsPerRank, int ranks, int localRanks, int hidden, long out, long stream);

  // ---- the node-level path (relay.cu; RelayPath) ----
  /**
   * The fused dispatch kernel for the node-level path: token t's row is {@code x}'s row
   * {@code rowIndex[t * rowStride]} (a relayed message's rows; -1: skip the token; 0 = row t), and
   * only destinations in {@code [destLo, destHi)} are stored to. Always the tuned kernel.
   */
  public static native void dispatchNode(
      long x, long scales, int scaleCols, long topkWeights, long slotIds, long pos, long pairPos,
      long pairIdx, int tokens, int topk, int slotsPerRank, int ranks, int rank, int rowBytes,
      long recvXPtrs, long recvScalesPtrs, long recvWeightsPtrs, long rowBasePtrs,
      long pairBasePtrs, long pairSrcPtrs, long pairHomePtrs, long pairTokenPtrs,
      long pairRowsPtrs, long rowIndex, int rowStride, int destLo, int destHi, long stream);

  /** {@code nodeRow[t * nodes + m]}: token t's row in the message to node m, or -1; {@code nodeCounts[m]}. */
  public static native void relayNodeRows(
      long slotIds, int tokens, int topk, int slotsPerRank, int ranks, int localRanks, long nodeRow,
      long nodeCounts, long stream);

  /** The messages to every remote node with rows, each in its slot of {@code sendArea}. */
  public static native void relayPack(
      long x, long scales, int scaleCols, long topkIdx, long topkWeights, long nodeRow, long nodeCounts,
      int tokens, int topk, int nodes, int node, int rowBytes, long sendArea, long slotBytes, long stream);

  /**
   * The fused combine's pair sums; a pair of source {@code src} with {@code stageRows[src] != 0}
   * goes to that staging (row {@code stageRow[src] + i}) instead of home.
   */
  public static native void relayCombineSend(
      int dtype, long y, long recvWeights, long pairSrc, long pairHome, long pairRows, int numPairs,
      int topk, int hidden, long partialPtrs, long[] stageRows, int[] stageRow, long stream);

  /** At a relay on node m: one node partial per token of a relayed source with a pair on m. */
  public static native void relayNodeSum(
      int dtype, long staging, long slotIds, long pairPos, long pairsTo, long nodeRow, int tokens, int topk,
      int slotsPerRank, int ranks, int localRanks, int m, int hidden, long out, long stream);

  /** At home: own node's partials and the received node partials, summed in node order. */
  public static native void relayHome(
      int dtype, long partials, long nodeRecv, long pairOffset, long slotIds, long nodeRow, int tokens, int topk,
      int slotsPerRank, int ranks, int localRanks, int node, int hidden, int slotTokens, long out, long stream);

  // ---- host index math (no GPU needed) ----
  /** Physical slot of every (t, k) of one source rank, -1 where topkIdx is -1. */
  public static native int[] hostChooseReplicas(
      int[] expertOffsets, int[] expertSlots, int slotsPerRank, int localRanks, int rank,
      int[] topkIdx, int topk);

  /** FUSCO receive row of each query triple (r, localSlot, j) on a destination with counts[R*S]. */
  public static native int[] hostRecvRows(int[] counts, int ranks, int slotsPerRank, int[] queries);

  /** slotTotal[S] ++ slotBase[S+1] ++ rowBase[R*S] ++ stagingPrefix[R*S+1]. */
  public static native int[] hostRecvOffsets(int[] counts, int ranks, int slotsPerRank);

  /** The device layout pipeline emulated on the host with the given chunk size. */
  public static native void hostLayout(
      int[] slotIds, int tokens, int topk, int slotsPerRank, int slots, int ranks, int chunk,
      int[] pos, int[] pairPos, int[] pairIdx, int[] pairOffset, int[] totals, int[] slotPrefix,
      byte[] isTokenInRank);

  public static native int[] hostPairOffsets(int[] slotIds, int tokens, int topk, int slotsPerRank);

  /** begin0, end0, begin1, end1, ... of the chunks of [0, n). */
  public static native long[] hostChunkRanges(long n, int size);

  /** For each row, the chunk c with prefix[c] &lt;= row &lt; prefix[c+1], or -1. */
  public static native int[] hostFindChunk(int[] prefix, int[] rows);

  public static native int[] hostSortSmall(int[] values);

  /**
   * The combine kernels' row sum ({@code warp_sum_rows}) run on the host, lane by lane, in the
   * shipped configuration: rows {@code rows[k]} of {@code y} (raw dtype bytes, rows of
   * {@code hidden}) summed in order, weighted by {@code w} (a pair's partial, as the fused
   * kernel) or, with {@code w} null, unweighted (the home kernel; by node when {@code nodes},
   * folding where bit k of {@code runEnds} is set). Returns the output row.
   */
  public static native byte[] hostWarpSumRows(
      int dtype, byte[] y, int[] rows, float[] w, int hidden, long runEnds, boolean nodes);

  /**
   * Bit k set where the home sum rounds a node partial: partial k (of a token with destination
   * ranks {@code rankMask}, ascending) is the last of its node's ranks.
   */
  public static native long hostNodeRunEnds(long rankMask, int ranks, int localRanks);

  /**
   * One token's combine with the kernels' arithmetic, on the host: y holds the token's rows (raw
   * dtype bytes) grouped by token-rank pair in destination-rank order, groups[g] rows each, in
   * ascending local slot order inside a group, groupRanks[g] that pair's destination rank; w the
   * weight of each row. On more than one node ({@code ranks > localRanks}) the home sum goes by
   * node as the home kernel's does. Returns the output row.
   */
  public static native byte[] hostCombineToken(
      int dtype, byte[] y, float[] w, int[] groups, int[] groupRanks, int ranks, int localRanks, int hidden);

  // ---- the node-level path's host index math and arithmetic (no GPU needed) ----
  /** {@code nodeRow[tokens * nodes]} then {@code nodeCounts[nodes]}, as the node_rows kernel computes them. */
  public static native int[] hostNodeRows(int[] slotIds, int tokens, int topk, int slotsPerRank, int ranks, int localRanks);

  /** {rows offset, scales offset, bytes} of a message of {@code tokens} tokens carrying {@code rows} rows. */
  public static native long[] hostRelayMessage(int tokens, int topk, int rows, int rowBytes, int scaleCols);

  /**
   * The relayed home sum's terms of a token with destination ranks {@code rankMask} at a home on
   * {@code node}: per term its node and its pair index (-1: a node partial received from there);
   * then the low and high 32 bits of the run ends (where a node's run ends).
   */
  public static native int[] hostRelayHomeTerms(long rankMask, int node, int ranks, int localRanks);

  /** Per selection of a relayed source, the staging row the relay's node sum on node m reads for it, or -1. */
  public static native int[] hostRelayStagingRows(
      int[] slotIds, int[] pairPos, int[] pairsTo, int tokens, int topk, int slotsPerRank, int ranks, int localRanks, int m);

  /**
   * One token's combine on the node-level path with the kernels' row sums, lane by lane: rows
   * grouped by pair as {@link #hostCombineToken}, summed per pair, per remote node (its relay's
   * node partial), then at home {@code home} in node order. Returns the output row.
   */
  public static native byte[] hostRelayCombineToken(
      int dtype, byte[] y, float[] w, int[] groups, int[] groupRanks, int ranks, int localRanks, int home, int hidden);
}
