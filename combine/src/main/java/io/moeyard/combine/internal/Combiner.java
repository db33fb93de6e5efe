package io.moeyard.combine.internal;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.layout.DispatchLayout;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.Agreement;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.util.Objects;

/**
 * The combine collective on one rank: expert outputs, laid out like the dispatch's receive
 * buffer, go back to their tokens' home ranks, weighted by the top-k weights and summed, in token
 * order. Every rank calls {@link #combine} with the handle of the same dispatch.
 *
 * <p>Reduction order (identical on every path and backend, hence identical bits): on the expert
 * rank, a token's rows are summed in ascending local slot order as {@code acc + w * y} in float
 * and rounded once to the output type (one partial per token-rank pair); at home the partials
 * are summed in ascending rank order in float and rounded once. On more than one node, per node
 * first: a node's partials in rank order, rounded once, then the node partials in node order,
 * rounded once. Every sum starts from 0. Tokens routed nowhere get zeros.
 *
 * <p>Protocol: validate and announce (bad input fails every rank, naming it, before any output
 * is touched), move partials home, barrier, reduce at home. One instance per rank; it keeps its
 * scratch between calls.
 */
public abstract sealed class Combiner implements AutoCloseable permits FusedCombiner, UnfusedCombiner {
  protected final Transport transport;
  protected final int rank;
  protected final int ranks;
  protected final int chunk;
  /** Every message of this rank starts so; made once, not per call. */
  private final String me;
  protected final Arena scratch = Arena.ofShared();

  /** Where home windows live when built for a communicator (null: this JVM's scratch, ranks of one JVM only). */
  protected final PeerMemory memory;
  /** Rows a home window in {@link #memory} holds. */
  protected final int homeCapacityRows;

  Combiner(Transport transport, int chunk) {
    this(transport, chunk, null, 0);
  }

  Combiner(Transport transport, int chunk, PeerMemory memory, int homeCapacityRows) {
    this.transport = Objects.requireNonNull(transport, "transport");
    this.memory = memory;
    this.homeCapacityRows = homeCapacityRows;
    if (chunk <= 0) throw new IllegalArgumentException("chunk must be > 0, got " + chunk);
    this.rank = transport.rank();
    this.ranks = transport.size();
    this.chunk = chunk;
    this.me = "rank " + rank + ": ";
  }

  /**
   * What a rank tells the others before combining: verdict, format, whether its dispatch took the
   * node-level path, where its partials go.
   */
  record Announcement(String problem, int hidden, DType dtype, boolean nodeRelay, HomeWindow home) {
    static final MessageCodec<Announcement> CODEC = new MessageCodec<>() {
      @Override
      public void write(Announcement a, MessageWriter out) {
        out.putString(a.problem).putInt(a.hidden).putDType(a.dtype).putBoolean(a.nodeRelay).putBoolean(a.home != null);
        if (a.home != null) {
          out.putRows(a.home.rows).putInts(a.home.peerStart).putRows(a.home.staging).putInts(a.home.stagingStart);
        }
      }

      @Override
      public Announcement read(MessageReader in) {
        String problem = in.getString();
        int hidden = in.getInt();
        DType dtype = in.getDType();
        boolean relay = in.getBoolean();
        HomeWindow home = in.getBoolean() ? new HomeWindow(in.getRows(), in.getInts(), in.getRows(), in.getInts()) : null;
        return new Announcement(problem, hidden, dtype, relay, home);
      }
    };
  }

  /**
   * Where peers write at a rank: {@code rows}, its home window, in which peer p's rows form one
   * run starting at {@code peerStart[p]} (so every expert rank writes one sequential run per
   * home); on the node-level path also {@code staging}, where the ranks of its node leave their
   * partials for the remote sources it relays: source s's partials from peer p start at
   * {@code stagingStart[s * ranks + p]} (null when it relays nothing).
   */
  record HomeWindow(RowBuffer rows, int[] peerStart, RowBuffer staging, int[] stagingStart) {
    HomeWindow(RowBuffer rows, int[] peerStart) {
      this(rows, peerStart, null, null);
    }
  }

  /**
   * Rows of a home window for {@code maxTokens} tokens: one partial per token-rank pair (fused),
   * or one returned row per selection (unfused).
   */
  static int homeRows(boolean fused, int ranks, int maxTokens, int topk) {
    long rows = (long) maxTokens * (fused ? Math.min(topk, ranks) : topk);
    return Math.toIntExact(Math.max(1, rows));
  }

  /** Bytes of peer memory a combiner for {@code maxTokens} tokens carves (its home window). */
  public static long peerMemoryBytes(boolean fused, int ranks, int maxTokens, int topk, int hidden, DType dtype) {
    return PeerMemory.rowsBytes(homeRows(fused, ranks, maxTokens, topk), hidden, dtype);
  }

  /**
   * Writes into {@code out} ({@code tokens} rows of this rank's dispatch) the weighted sum of
   * {@code expertOut} (at least {@code handle.receivedRows()} rows, expert-major as received).
   */
  public void combine(DispatchHandle handle, RowBuffer expertOut, RowBuffer out) {
    combine(handle, expertOut, out, null);
  }

  /**
   * As {@link #combine(DispatchHandle, RowBuffer, RowBuffer)}, with a problem the caller found on
   * this rank (null if none), announced so that every rank fails with it before any output is
   * written.
   */
  public void combine(DispatchHandle handle, RowBuffer expertOut, RowBuffer out, String callerProblem) {
    String problem = callerProblem != null ? callerProblem
        : handle == null ? "rank " + rank + ": the dispatch handle is null"
        : expertOut == null ? "rank " + rank + ": expert output is null"
        : out == null ? "rank " + rank + ": out is null"
        : closed ? "rank " + rank + ": the combiner is closed"
        : localProblem(handle, expertOut, out);
    HomeWindow home = problem == null ? homeWindow(handle, out.hidden(), out.dtype()) : null;
    boolean relay = problem == null && handle.nodeRelay();
    Object[] got = transport.allGather(
        new Announcement(problem, out == null ? 0 : out.hidden(), out == null ? null : out.dtype(), relay, home),
        Announcement.CODEC);
    Announcement[] all = new Announcement[got.length];
    for (int r = 0; r < got.length; r++) all[r] = (Announcement) got[r];
    String wp = worldProblem(all);
    if (wp != null) throw new CollectiveException("combine: " + wp);
    try {
      HomeWindow[] homes = new HomeWindow[ranks];
      for (int r = 0; r < ranks; r++) homes[r] = all[r].home();
      send(handle, expertOut, homes);
      transport.barrier();
      if (relay) relayNodePartials(handle, home);
      reduceAtHome(handle, home.rows(), out);
      // homes may still be copying node partials out of this rank's memory, which its owner may
      // free once combine returns; the dispatch's own closing barrier covers its messages
      if (relay) transport.barrier();
    } catch (CollectiveException e) {
      throw e;
    } catch (RuntimeException | Error e) {
      transport.abort(e);
      throw e;
    }
  }

  private String localProblem(DispatchHandle handle, RowBuffer expertOut, RowBuffer out) {
    if (!handle.isOpen()) return me + "the dispatch handle is closed";
    if (handle.transport() != transport) return me + "the dispatch handle belongs to another transport";
    if (memory == null && !transport.sharesAddressSpace()) {
      return me + "a combiner on a process transport needs peer memory (build it with one, as Communicator does)";
    }
    if (!out.dtype().combinable()) return me + "combine output dtype " + out.dtype().cliName() + " is not bf16, fp16 or fp32";
    if (expertOut.dtype() != out.dtype()) {
      return me + "expert output is " + expertOut.dtype().cliName() + " but out is " + out.dtype().cliName();
    }
    if (expertOut.hidden() != out.hidden()) {
      return me + "expert output hidden " + expertOut.hidden() + " differs from out hidden " + out.hidden();
    }
    if (expertOut.rows() < handle.receivedRows()) {
      return me + "expert output has " + expertOut.rows() + " rows, the dispatch delivered " + handle.receivedRows();
    }
    if (out.rows() != handle.layout().tokens) {
      return me + "out has " + out.rows() + " rows, the dispatch had " + handle.layout().tokens + " tokens";
    }
    return handle.nodeRelay() ? relayProblem(handle) : null;
  }

  /** Why this combiner cannot return {@code handle}, a node-level dispatch, or null. */
  String relayProblem(DispatchHandle handle) {
    return "rank " + rank + ": the dispatch took the node-level path, this combiner was built without node relay buffers";
  }

  /**
   * The node-level path, after every expert rank stored its partials: as a relay, sum the
   * partials of each remote source's tokens into one row per (token, node) and send them home;
   * as a home, receive them into {@code home}'s rows.
   */
  void relayNodePartials(DispatchHandle handle, HomeWindow home) {
    throw new IllegalStateException("no node relay");
  }

  private static String worldProblem(Announcement[] all) {
    String p = Agreement.check(all.length, r -> all[r].problem(), r -> all[r].hidden(), r -> all[r].dtype());
    if (p != null) return p;
    for (int r = 1; r < all.length; r++) {
      if (all[r].nodeRelay() != all[0].nodeRelay()) {
        return "ranks disagree on the node path of their dispatch: rank 0 " + (all[0].nodeRelay() ? "relayed" : "sent direct")
            + ", rank " + r + (all[r].nodeRelay() ? " relayed" : " sent direct");
      }
    }
    return null;
  }

  /** Where peers write at this rank (partials or returned rows), rows from scratch. */
  abstract HomeWindow homeWindow(DispatchHandle handle, int hidden, DType dtype);

  /**
   * The order in which a token's partials are summed at home on a topology of more than one
   * node: per node (ascending), the partials of its ranks (ascending) summed and rounded to the
   * output type, the node partials then summed and rounded once. Lists, for {@code q} over the
   * token's pairs, the groups and terms of a two-level batch ({@code row.applyAsInt(q)}: the
   * partial's row); the caller closes the output.
   */
  static void nodeGroups(SumBatch batch, DispatchLayout layout, int t, int localRanks, java.util.function.IntUnaryOperator row) {
    int prev = -1;
    for (int q = layout.pairOffset[t]; q < layout.pairOffset[t + 1]; q++) {
      int m = layout.pairRank[q] / localRanks;
      if (m != prev && prev >= 0) batch.endGroup();
      batch.term(row.applyAsInt(q), 1f);
      prev = m;
    }
    if (prev >= 0) batch.endGroup();
  }

  /** Expert side: moves this rank's expert outputs toward their homes. */
  abstract void send(DispatchHandle handle, RowBuffer expertOut, HomeWindow[] homes);

  /** Home side, after every rank sent: sums what arrived into {@code out}. */
  abstract void reduceAtHome(DispatchHandle handle, RowBuffer home, RowBuffer out);

  /**
   * Which implementation runs this JVM's BF16 combine sums, for reports: the host helper (with
   * its rounding), the Vector API, or scalar loops. All give the same bits; they differ in speed.
   */
  public static String bf16Arithmetic() {
    if (NativeRowMath.AVAILABLE) {
      return switch (NativeRowMath.LEVEL) {
        case 3 -> "host helper, AVX-512 with AVX512_BF16 rounding";
        case 2 -> "host helper, AVX-512";
        default -> "host helper, AVX2";
      };
    }
    return RowMath.SIMD ? "Vector API" : "scalar Java";
  }

  private boolean closed;

  /**
   * Frees this combiner's scratch (home windows, stages). Call it on every rank after the last
   * combine; later calls fail on every rank, naming this one.
   */
  @Override
  public void close() {
    if (!closed) {
      closed = true;
      freeScratch();
      scratch.close();
    }
  }

  /** Releases what the subclass allocated outside {@link #scratch}. */
  void freeScratch() {}

  private RowBuffer cached;

  /** Scratch that only grows; old buffers stay alive because peers may hold their addresses. */
  final RowBuffer scratchRows(int rows, int hidden, DType dtype) {
    RowBuffer b = cached;
    if (b == null || b.hidden() != hidden || b.dtype() != dtype || b.rows() < rows) {
      int n = Math.max(rows, b == null ? 0 : b.rows());
      // with peer memory: carved once at the capacity it was sized for
      b = memory == null ? RowBuffer.allocate(scratch, n, hidden, dtype) : memory.rows(Math.max(n, homeCapacityRows), hidden, dtype);
      cached = b;
    }
    return b;
  }
}
