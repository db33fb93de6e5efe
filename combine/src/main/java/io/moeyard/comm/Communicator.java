package io.moeyard.comm;

import io.moeyard.dispatch.Routing;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;

/**
 * The MoE all-to-all of one rank: dispatch routed tokens to the ranks that hold their experts,
 * combine the expert outputs back. One per rank, built once from the world, the expert map and the
 * sizes ({@link CommConfig}); it owns every buffer it needs and {@link #close()} frees them all.
 * Every rank calls the same collectives in the same order.
 *
 * <pre>{@code
 * try (Communicator comm = Communicator.cpu(transport, experts, CommConfig.of(4096, 7168, 8, BF16, BF16))) {
 *   Dispatched d = comm.dispatch(x, routing);   // rows for this rank's slots, expert-major
 *   RowBuffer y = runExperts(d);                // same row order as d.received()
 *   comm.combine(d, y, out);                    // out[t] = sum_k w[t,k] * expert_k(x[t])
 * }
 * }</pre>
 *
 * <p>Bad input on any rank (an expert id out of range, more tokens than the communicator was built
 * for, shapes or dtypes other than its config, a handle of another communicator or of an older
 * dispatch, a closed communicator) makes every rank throw the same
 * {@link io.moeyard.engine.CollectiveException} naming the value, before any buffer is written.
 */
public interface Communicator extends AutoCloseable {

  /**
   * The CPU backend: this rank of an in-JVM world ({@link io.moeyard.engine.transport.CpuWorld}), of
   * a world of processes on one host ({@code io.moeyard.engine.shm.ShmTransport}) or of processes
   * on several machines ({@code io.moeyard.engine.shm.ClusterTransport}: each node within one
   * machine, and only the fused node-level path, whose messages cross nodes; any other config
   * throws {@link IllegalArgumentException} on every rank). Everything peers store into is carved,
   * here and once, from the transport's peer memory (a collective on process transports: every
   * rank builds its communicator in the same order).
   */
  static Communicator cpu(Transport transport, ExpertMap experts, CommConfig config) {
    return new CpuCommunicator(transport, experts, config);
  }

  /**
   * Rows one rank can receive at most: every token of every rank sending a row to each of this
   * rank's slots it selects, i.e. {@code ranks x maxTokens x min(topk, slotsPerRank)}.
   */
  static long worstCaseReceiveRows(int ranks, int maxTokens, int topk, int slotsPerRank) {
    return (long) ranks * maxTokens * Math.min(topk, slotsPerRank);
  }

  int rank();

  int ranks();

  ExpertMap expertMap();

  CommConfig config();

  /** Rows this rank's receive buffer holds (what engines size their expert inputs by). */
  int receiveCapacity();

  /** Dispatches into the communicator's receive buffer; the result is valid until the next dispatch. */
  Dispatched dispatch(RowBuffer x, Routing routing);

  /**
   * Dispatches into {@code into} (at least as many rows as this rank receives, the config's
   * dispatch dtype and hidden size); the result's rows then live as long as the caller's buffer.
   */
  Dispatched dispatch(RowBuffer x, Routing routing, RowBuffer into);

  /**
   * Dispatches with the routing as the gate wrote it: {@code tokens x topk} int32 expert ids
   * ({@code -1} = not routed) and f32 weights, native byte order.
   */
  default Dispatched dispatch(RowBuffer x, MemorySegment topkIdx, MemorySegment topkWeights, int tokens) {
    return dispatch(x, routingOf(topkIdx, topkWeights, tokens, config().topk()));
  }

  /** Writes into {@code out} ({@code d.tokens()} rows, combine dtype) the weighted sum of the expert outputs {@code y}. */
  void combine(Dispatched d, RowBuffer y, RowBuffer out);

  /**
   * Combine for speculative token shuffling: each token's result is stored on the rank chosen for
   * its next layer, {@code nextRank[t]}, instead of at home. The expert ranks' partials still
   * reach the token's home and are summed there in the usual order (so the bits do not depend on
   * where a token goes next); the target then copies the row from home into its {@code into}
   * (any memory of the caller's, also between processes). A token that moves costs one row
   * home -> target, the row its residual stream needs to move anyway. Rows land in {@code into} by source rank, then source token ({@link Arrivals}); bad
   * targets or an {@code into} too small for what arrives fail every rank before {@code into} is
   * written.
   *
   * <p>The {@link Arrivals} returned are the communicator's own, valid until its next shuffled combine.
   *
   * @param nextRank {@code [d.tokens()]} target rank of each of this rank's tokens
   * @param into rows for the tokens arriving here, combine dtype and hidden size
   */
  Arrivals combineShuffled(Dispatched d, RowBuffer y, int[] nextRank, RowBuffer into);

  /**
   * {@link #dispatch(RowBuffer, Routing)} on this communicator's own thread (a virtual thread: a
   * collective that waits for peers never blocks a ForkJoin worker). Async calls run in the order
   * they are made; do not mix them with synchronous calls that are still outstanding: a
   * synchronous call made while async calls are pending waits for them to end, then fails every
   * rank alike.
   */
  CompletableFuture<Dispatched> dispatchAsync(RowBuffer x, Routing routing);

  /** {@link #combine} on this communicator's own thread, after the async calls made before it. */
  CompletableFuture<Void> combineAsync(Dispatched d, RowBuffer y, RowBuffer out);

  /** Frees every buffer; later calls fail naming this rank. Call it on every rank after the last collective. */
  @Override
  void close();

  /** A routing copied from int32 / f32 segments of {@code tokens x topk} elements. */
  static Routing routingOf(MemorySegment topkIdx, MemorySegment topkWeights, int tokens, int topk) {
    long n = (long) tokens * topk;
    if (tokens < 0) throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
    if (topkIdx.byteSize() < n * Integer.BYTES) {
      throw new IllegalArgumentException("topkIdx holds " + topkIdx.byteSize() + " bytes, " + tokens + " x " + topk + " int32 need " + n * Integer.BYTES);
    }
    if (topkWeights.byteSize() < n * Float.BYTES) {
      throw new IllegalArgumentException("topkWeights holds " + topkWeights.byteSize() + " bytes, " + tokens + " x " + topk + " f32 need " + n * Float.BYTES);
    }
    int[] idx = topkIdx.asSlice(0, n * Integer.BYTES).toArray(ValueLayout.JAVA_INT);
    float[] w = topkWeights.asSlice(0, n * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT);
    return new Routing(tokens, topk, idx, w);
  }
}
