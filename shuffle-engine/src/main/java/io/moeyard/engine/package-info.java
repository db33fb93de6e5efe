/**
 * The shared vocabulary of moeyard's data path: {@link io.moeyard.engine.Topology} (nodes x local
 * ranks), {@link io.moeyard.engine.ExpertMap} (logical experts to physical slots with replicas and
 * the replica-choice rule), {@link io.moeyard.engine.RowBuffer} (token-major rows in a
 * MemorySegment, as JVM engines hold activations), {@link io.moeyard.engine.DType} and the
 * round-to-nearest-even {@link io.moeyard.engine.Numerics} every backend shares, so that every
 * backend produces the same bits. {@link io.moeyard.engine.HostLibrary} loads the CPU backend's
 * optional native helper (streaming row copies for {@link io.moeyard.engine.RowCopy}, combine's
 * BF16 sums), built with this module from {@code src/main/c}.
 */
package io.moeyard.engine;
