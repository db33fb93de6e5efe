/**
 * What an engine hands to dispatch: {@link io.moeyard.dispatch.Routing}, one rank's top-k expert
 * ids and weights (from arrays or int32/f32 segments), checked against the expert count before any
 * row moves. Dispatch itself is {@code io.moeyard.comm.Communicator#dispatch}; its implementation
 * lives in {@code io.moeyard.dispatch.internal} (not API), and the layout arithmetic that both the
 * CPU path and the {@code moeyard layout} command use in {@code io.moeyard.dispatch.layout}.
 */
package io.moeyard.dispatch;
