package io.moeyard.bench.run;

import io.moeyard.combine.internal.Combiner;
import io.moeyard.combine.internal.FusedCombiner;
import io.moeyard.combine.internal.UnfusedCombiner;
import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.dispatch.internal.Dispatcher;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.dispatch.internal.UnfusedDispatcher;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.Workload;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Every output of one dispatch + combine of a {@link Workload} on the CPU backend (ranks as
 * threads of a {@link CpuWorld}): the reference the other backends are compared with, bit for
 * bit. Receive rows and combine outputs stay off-heap in this object's arena (closed by
 * {@link #close()}); the rest is copied out of the handles.
 */
final class CpuRun implements AutoCloseable {
  final boolean fused;
  final Arena arena = Arena.ofShared();
  final int[] rows;
  /** Received rows, expert-major, {@code rows[d] * rowBytes} bytes. */
  final RowBuffer[] recv;
  final float[][] recvScales;
  final float[][] recvWeights;
  final int[][] slotCounts;
  final int[] pairs;
  /** Source rank / token of each received pair (rank-major, token ascending). */
  final int[][] pairSrc;
  final int[][] pairToken;
  /** Source rank / token of each received row. */
  final int[][] rowSrc;
  final int[][] rowToken;
  /** This rank's layout as a source: token-rank pairs to each destination, and [T][R] flags. */
  final int[][] numTokensPerRank;
  final byte[][] isTokenInRank;
  /** Combine outputs, {@code [tokens, hidden]} in the out dtype. */
  final RowBuffer[] out;
  /** Per rank: received rows, those from other ranks, rows it sent across nodes (the bench's rows block). */
  final long[][] rowCounts;

  private CpuRun(int ranks, boolean fused) {
    this.fused = fused;
    rows = new int[ranks];
    recv = new RowBuffer[ranks];
    recvScales = new float[ranks][];
    recvWeights = new float[ranks][];
    slotCounts = new int[ranks][];
    pairs = new int[ranks];
    pairSrc = new int[ranks][];
    pairToken = new int[ranks][];
    rowSrc = new int[ranks][];
    rowToken = new int[ranks][];
    numTokensPerRank = new int[ranks][];
    isTokenInRank = new byte[ranks][];
    out = new RowBuffer[ranks];
    rowCounts = new long[3][ranks];
  }

  /** Runs the fused (FUSCO, single-hop) or the unfused (Megatron-style) CPU path once on every rank. */
  static CpuRun run(Workload wl, boolean fused, int chunk) {
    return run(wl, fused, false, chunk);
  }

  /**
   * As {@link #run(Workload, boolean, int)}; with {@code relay} the fused path crosses nodes
   * through the node relay (which needs its buffers in peer memory, so every rank runs as
   * {@link #runRank} does).
   */
  static CpuRun run(Workload wl, boolean fused, boolean relay, int chunk) {
    int ranks = wl.ranks();
    CpuRun res = new CpuRun(ranks, fused);
    boolean ok = false;
    try (CpuWorld world = CpuWorld.create(wl.map.topology())) {
      if (relay) {
        world.run(t -> {
          rankInPeerMemory(t, wl, fused, true, chunk, res);
          return null;
        });
        ok = true;
        return res;
      }
      for (int r = 0; r < ranks; r++) {
        res.recv[r] = RowBuffer.allocate(res.arena, wl.ref.rowsReceivedBy(r), wl.hidden, wl.dtype);
        res.out[r] = RowBuffer.allocate(res.arena, wl.tokens[r], wl.hidden, wl.outType);
      }
      world.run(t -> {
        // the implementation classes, not the Communicator: the other backends are compared on
        // the internal records too (pair tables, layout flags), which the communicator keeps inside
        try (Dispatcher d = fused
                ? new FusedDispatcher(t, wl.map, new DispatchOptions(chunk))
                : new UnfusedDispatcher(t, wl.map, new DispatchOptions(chunk));
            Combiner c = fused ? new FusedCombiner(t, chunk) : new UnfusedCombiner(t, chunk)) {
          res.rank(t.rank(), wl, d, c);
        }
        return null;
      });
      ok = true;
      return res;
    } finally {
      if (!ok) res.close();
    }
  }

  /**
   * This rank's part of {@link #run} on {@code t} (a rank of any world, e.g. a process over shared
   * memory): the dispatcher's and combine's windows and the receive rows in peer memory sized for
   * this workload; only index {@code t.rank()} of the result is filled. The received rows are
   * copied out of peer memory before it is released. {@code relay}: the fused path crosses nodes
   * through the node relay.
   */
  static CpuRun runRank(Transport t, Workload wl, boolean fused, boolean relay, int chunk) {
    CpuRun res = new CpuRun(wl.ranks(), fused);
    boolean ok = false;
    try {
      rankInPeerMemory(t, wl, fused, relay, chunk, res);
      ok = true;
      return res;
    } finally {
      if (!ok) res.close();
    }
  }

  private static void rankInPeerMemory(Transport t, Workload wl, boolean fused, boolean relay, int chunk, CpuRun res) {
    int r = t.rank();
    int rows = wl.ref.rowsReceivedBy(r);
    int maxTokens = 0;
    for (int n : wl.tokens) maxTokens = Math.max(maxTokens, n);
    boolean relays = fused && relay;
    FusedDispatcher.RelaySize size = relays ? new FusedDispatcher.RelaySize(Math.max(1, maxTokens), wl.topk, wl.hidden, wl.dtype) : null;
    long bytes = PeerMemory.rowsBytes(rows, wl.hidden, wl.dtype)
        + Dispatcher.peerMemoryBytes(fused, rows, wl.hidden, wl.dtype)
        + FusedDispatcher.relayBytes(wl.map.topology(), size)
        + (fused ? FusedCombiner.peerMemoryBytes(relays, wl.map.topology(), maxTokens, wl.topk, wl.hidden, wl.outType)
            : Combiner.peerMemoryBytes(false, wl.ranks(), maxTokens, wl.topk, wl.hidden, wl.outType));
    try (PeerMemory memory = t.peerMemory(bytes)) {
      RowBuffer recv = memory.rows(rows, wl.hidden, wl.dtype);
      res.recv[r] = recv;
      res.out[r] = RowBuffer.allocate(res.arena, wl.tokens[r], wl.hidden, wl.outType);
      DispatchOptions opts = new DispatchOptions(chunk);
      try (Dispatcher d = fused ? new FusedDispatcher(t, wl.map, opts, memory, rows, size)
              : new UnfusedDispatcher(t, wl.map, opts, memory, rows);
          Combiner c = fused ? new FusedCombiner(t, chunk, memory, maxTokens, wl.topk, relays)
              : new UnfusedCombiner(t, chunk, memory, maxTokens, wl.topk)) {
        res.rank(r, wl, d, c);
      }
      RowBuffer kept = RowBuffer.allocate(res.arena, rows, wl.hidden, wl.dtype);
      MemorySegment.copy(recv.segment(), recv.offset(), kept.segment(), 0, recv.byteSize());
      if (recv.scales() != null) MemorySegment.copy(recv.scales(), 0, kept.scales(), 0, recv.scales().byteSize());
      res.recv[r] = kept;
      t.barrier(); // nobody releases peer memory a peer may still be reading
    }
  }

  private void rank(int r, Workload wl, Dispatcher dispatcher, Combiner combiner) {
    try (DispatchHandle h = dispatcher.dispatch(wl.x(r), wl.routing(r), recv[r])) {
      int n = h.receivedRows();
      rows[r] = n;
      CpuBench.countRows(n, h::rowSourceRank, h.rowsSentAcrossNodes(), r, rowCounts);
      int sc = wl.scalesPerRow();
      recvScales[r] = new float[n * sc];
      if (sc > 0) {
        MemorySegment.copy(recv[r].scales(), ValueLayout.JAVA_FLOAT, 0, recvScales[r], 0, n * sc);
      }
      recvWeights[r] = java.util.Arrays.copyOf(h.receivedWeights(), n);
      slotCounts[r] = h.slotCounts();
      int q = h.receivedPairs();
      pairs[r] = q;
      pairSrc[r] = new int[q];
      pairToken[r] = new int[q];
      for (int i = 0; i < q; i++) {
        pairSrc[r][i] = h.pairSourceRank(i);
        pairToken[r][i] = h.rowSourceToken(h.pairRow(h.pairRowStart(i)));
      }
      rowSrc[r] = new int[n];
      rowToken[r] = new int[n];
      for (int i = 0; i < n; i++) {
        rowSrc[r][i] = h.rowSourceRank(i);
        rowToken[r][i] = h.rowSourceToken(i);
      }
      DispatchLayout lay = h.layout();
      numTokensPerRank[r] = lay.pairsTo.clone();
      int ranks = wl.ranks();
      isTokenInRank[r] = new byte[wl.tokens[r] * ranks];
      for (int t = 0; t < wl.tokens[r]; t++) {
        for (int d = 0; d < ranks; d++) isTokenInRank[r][t * ranks + d] = (byte) (lay.isTokenInRank(t, d) ? 1 : 0);
      }
      combiner.combine(h, wl.y(r), out[r]);
    }
  }

  @Override
  public void close() {
    arena.close();
  }
}
