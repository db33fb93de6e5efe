/**
 * The communicator: the API an engine links. One {@link io.moeyard.comm.Communicator} per rank,
 * built once from the world, the expert map and the sizes ({@link io.moeyard.comm.CommConfig});
 * {@code dispatch} returns an opaque {@link io.moeyard.comm.Dispatched} that the experts read and
 * {@code combine} reverses. It owns every buffer it allocates and frees them in {@code close()};
 * steady-state calls allocate no rows, and little else on the Java heap: a shuffled combine's
 * delivery reuses its scratch and its {@link io.moeyard.comm.Arrivals}; what dispatch and combine
 * still allocate per call (the tokens' layout, announcements, the handle) is bounded by
 * {@code SteadyStateAllocationTest}. On more than one node its fused path crosses nodes through
 * the node relay by default ({@link io.moeyard.comm.CommConfig.NodePath}).
 *
 * <p>Backends: {@link io.moeyard.comm.Communicator#cpu} (ranks as threads of one JVM). The
 * dispatcher and combiner classes underneath ({@code io.moeyard.dispatch}, {@code
 * io.moeyard.combine}) are the implementation, public only because they live in other modules.
 */
package io.moeyard.comm;
