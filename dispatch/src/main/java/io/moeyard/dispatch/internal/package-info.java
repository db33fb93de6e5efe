/**
 * Internal: the dispatch collective's implementation, behind {@code io.moeyard.comm.Communicator}.
 * Not API: engines never construct these classes, and they change without notice. They are public
 * only because the communicator, the CUDA backend's CPU oracle ({@code CpuRun}, which compares the
 * pair tables too) and the JMH benchmarks live in other modules.
 *
 * <p>{@link io.moeyard.dispatch.internal.FusedDispatcher} carries each routed token straight into
 * its final expert-major place on every rank that holds one of its experts (once per rank; across
 * nodes once per node, through {@link io.moeyard.dispatch.internal.DispatchRelay}), {@link
 * io.moeyard.dispatch.internal.UnfusedDispatcher} is the permute / all-to-all-v / sort-chunks
 * baseline it is measured against. Both return a {@link io.moeyard.dispatch.internal.DispatchHandle}
 * that combine reverses.
 *
 * <p>Receive layout (FUSCO): on rank d, the j-th token that rank r sends for local slot e lands at
 * row {@code sum_{e'<e} T[e'] + sum_{r'<r} N[r', e] + j}, where N[r, e] counts r's tokens for slot
 * e and T[e] = sum_r N[r, e]. Deterministic, so results are reproducible bit for bit.
 */
package io.moeyard.dispatch.internal;
