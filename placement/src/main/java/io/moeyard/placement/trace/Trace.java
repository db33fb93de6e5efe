package io.moeyard.placement.trace;

/**
 * A routing trace of one workload, either per token ({@link RoutingTrace}) or loads only
 * ({@link LoadTrace}). Planners that only balance load accept both; affinity needs per-token data.
 */
public sealed interface Trace permits RoutingTrace, LoadTrace {
  /** Where the trace came from, for messages and reports (usually the file name). */
  String name();

  int layers();

  int experts();

  /** {@code [layer][expert]} tokens routed to each logical expert. */
  double[][] loads();
}
