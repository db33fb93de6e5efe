/**
 * The dispatch collective: {@link io.moeyard.dispatch.FusedDispatcher} carries each routed token
 * straight into its final expert-major place on every rank that holds one of its experts (once
 * per rank: dedup), {@link io.moeyard.dispatch.UnfusedDispatcher} is the permute / all-to-all-v /
 * sort-chunks baseline it is measured against. Both return a
 * {@link io.moeyard.dispatch.DispatchHandle} that combine reverses.
 *
 * <p>Receive layout (FUSCO): on rank d, the j-th token that rank r sends for local slot e lands at
 * row {@code sum_{e'<e} T[e'] + sum_{r'<r} N[r', e] + j}, where N[r, e] counts r's tokens for slot
 * e and T[e] = sum_r N[r, e]. Deterministic, so results are reproducible bit for bit.
 *
 * <p>On more than one node the fused dispatcher can take the node-level path (built with a
 * {@link io.moeyard.dispatch.FusedDispatcher.RelaySize}): a token crosses to each remote node once,
 * as a packed message to the rank with its sender's local index there (package-private {@code
 * DispatchRelay}, through {@code Transport.sendRecv}), and that relay makes the sender's own stores
 * into its node's windows; the receive layout is unchanged.
 *
 * <p>Engines do not call these classes: they use {@code io.moeyard.comm.Communicator} (combine
 * module), which owns a dispatcher and a combiner per rank, sizes and frees their buffers and keeps
 * the handle's pair tables inside. The classes are public because the communicator, the CUDA
 * oracle ({@code CpuRun}) and the JMH benchmarks live in other modules.
 */
package io.moeyard.dispatch;
