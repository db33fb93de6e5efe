/**
 * Internal: the combine collective's implementation, behind {@link io.moeyard.comm.Communicator}.
 * Not API: engines never construct these classes, and they change without notice.
 *
 * <p>The combine collective: expert outputs, in the dispatch's expert-major layout, back to their
 * tokens' home ranks, weighted and summed. {@link io.moeyard.combine.internal.FusedCombiner} reduces on
 * the expert rank first (one partial per token-rank pair crosses back);
 * {@link io.moeyard.combine.internal.UnfusedCombiner} is Megatron's sort-back / all-to-all-v / unpermute
 * baseline with the same arithmetic, so both produce the same bits (see
 * {@link io.moeyard.combine.internal.Combiner} for the reduction order, per node on several nodes). After a
 * node-level dispatch the fused combiner returns along the same path: partials for a remote home
 * go to its relay on the expert's node, which sends one node partial per token and node. The
 * arithmetic is defined once,
 * in {@code RowMath}; its BF16 sums run in the host helper where it loaded ({@code NativeRowMath}),
 * else in the Vector API ({@code VectorRowMath}), else in scalar loops, all with the same bits.
 *
 * <p>{@link io.moeyard.comm.Communicator} pairs a dispatcher with a combiner per rank and owns
 * their memory.
 */
package io.moeyard.combine.internal;
