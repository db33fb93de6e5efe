/**
 * Dispatch layout: routing resolved to physical slots, token-rank pairs (the dedup unit) and the
 * per-destination descriptors, computed on the sending rank before any data moves. Kept apart
 * from the data movement so that the CPU and GPU backends, and the fused and unfused paths, all
 * start from the same numbers.
 */
package io.moeyard.dispatch.layout;
