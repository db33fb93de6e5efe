package io.moeyard.combine.internal;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.schedule.ChunkSchedule;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;

/**
 * The unfused baseline of combine (Megatron's reverse path): sort the expert-major rows back
 * into [source][slot][token] blocks, all-to-all-v every selection's row back to its home (no
 * dedup), then unpermute and reduce at home. The home reduction follows moeyard's order (group
 * by expert rank, round each group's partial to the output type, sum groups in rank order; on
 * several nodes the groups' partials are first summed per node and rounded, then the node
 * partials in node order), so its output equals the fused path's bit for bit and the two are
 * compared on data movement alone.
 */
public final class UnfusedCombiner extends Combiner {
  private final Arena local = Arena.ofShared();
  private RowBuffer sortedBack;
  private final int[] blockStart;
  private final int[] blockRows;
  /** Every token's two-level sum of its returned rows. */
  private final SumBatch tokenSums = new SumBatch(true, scratch);
  /** Several nodes: every pair's partial, then every token's sum of them node by node. */
  private final SumBatch pairSums = new SumBatch(false, scratch);
  private final SumBatch nodeSums = new SumBatch(true, scratch);
  private RowBuffer pairPartials;

  public UnfusedCombiner(Transport transport) {
    this(transport, DispatchOptions.DEFAULT_CHUNK_PAIRS);
  }

  public UnfusedCombiner(Transport transport, int chunkRows) {
    super(transport, chunkRows);
    this.blockStart = new int[ranks];
    this.blockRows = new int[ranks];
  }

  /** Returned rows peers store into live in {@code memory}, room for {@code maxTokens} tokens of top-{@code topk}. */
  public UnfusedCombiner(Transport transport, int chunkRows, PeerMemory memory, int maxTokens, int topk) {
    super(transport, chunkRows, java.util.Objects.requireNonNull(memory, "memory"), homeRows(false, transport.size(), maxTokens, topk));
    this.blockStart = new int[ranks];
    this.blockRows = new int[ranks];
    Machines.require(transport, "the unfused combine", true);
  }

  @Override
  void freeScratch() {
    local.close();
  }

  @Override
  HomeWindow homeWindow(DispatchHandle handle, int hidden, DType dtype) {
    DispatchLayout layout = handle.layout();
    int[] slotStart = layout.slotPermutedStart();
    int[] peerStart = new int[ranks];
    for (int d = 0; d < ranks; d++) peerStart[d] = slotStart[d * layout.slotsPerRank];
    return new HomeWindow(scratchRows(layout.selections(), hidden, dtype), peerStart);
  }

  @Override
  void send(DispatchHandle handle, RowBuffer y, HomeWindow[] homes) {
    int spr = handle.expertMap().slotsPerRank();
    int rows = handle.receivedRows();
    if (sortedBack == null || sortedBack.hidden() != y.hidden() || sortedBack.dtype() != y.dtype() || sortedBack.rows() < rows) {
      sortedBack = RowBuffer.allocate(local, rows, y.hidden(), y.dtype());
    }
    long rowBytes = y.rowBytes();
    // sort chunks back: [slot][source][token] -> [source][slot][token]
    int dst = 0;
    for (int r = 0; r < ranks; r++) {
      blockStart[r] = dst;
      for (int e = 0; e < spr; e++) {
        int n = handle.countFrom(r, e);
        if (n > 0) {
          int src = handle.slotOffset(e) + handle.sourceOffsetInSlot(r, e);
          RowCopy.copy(y.segment(), y.rowOffset(src), sortedBack.segment(), sortedBack.rowOffset(dst), n * rowBytes);
        }
        dst += n;
      }
      blockRows[r] = dst - blockStart[r];
    }
    // all-to-all-v back: source r's block lands where r's permuted buffer had it
    ChunkSchedule.forEachChunk(rank, blockRows, chunk, (r, from, to) -> {
      RowBuffer home = homes[r].rows();
      int at = homes[r].peerStart()[rank];
      RowCopy.copy(sortedBack.segment(), sortedBack.rowOffset(blockStart[r] + from),
          home.segment(), home.rowOffset(at + from), (to - from) * rowBytes);
    });
  }

  @Override
  void reduceAtHome(DispatchHandle handle, RowBuffer returned, RowBuffer out) {
    DispatchLayout layout = handle.layout();
    int[] perm = layout.permutedPosition();
    float[] w = handle.homeWeights();
    int k = layout.topk;
    int localRanks = transport.topology().localRanks();
    if (transport.topology().nodes() > 1) {
      // three levels: the pair partials (as the expert rank would round them), then per node
      int pairs = layout.pairs();
      if (pairPartials == null || pairPartials.hidden() != out.hidden() || pairPartials.dtype() != out.dtype()
          || pairPartials.rows() < pairs) {
        pairPartials = RowBuffer.allocate(local, Math.max(1, pairs), out.hidden(), out.dtype());
      }
      pairSums.clear();
      for (int q = 0; q < pairs; q++) {
        int t = layout.pairToken[q];
        for (int sel = layout.pairSel[q]; sel < layout.pairSelEnd[q]; sel++) pairSums.term(perm[sel], w[t * k + layout.sortedK[sel]]);
        pairSums.endOutput();
      }
      pairSums.run(returned, true, pairPartials, 0, false);
      nodeSums.clear();
      for (int t = 0; t < layout.tokens; t++) {
        nodeGroups(nodeSums, layout, t, localRanks, q -> q);
        nodeSums.endOutput();
      }
      nodeSums.run(pairPartials, true, out, 0, false);
      return;
    }
    tokenSums.clear();
    for (int t = 0; t < layout.tokens; t++) {
      // unpermute: the token's returned rows, grouped by the expert rank they came back from
      for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) {
        for (int sel = layout.pairSel[q]; sel < layout.pairSelEnd[q]; sel++) tokenSums.term(perm[sel], w[t * k + layout.sortedK[sel]]);
        tokenSums.endGroup();
      }
      tokenSums.endOutput(); // a token routed nowhere: no groups, zeros
    }
    tokenSums.run(returned, true, out, 0, false);
  }
}
