/**
 * How a rank orders its transfers: chunked, round-robin over rotated peers. The order is shared
 * by every collective so that fused and unfused paths disperse traffic the same way and their
 * figures compare data movement, not scheduling.
 */
package io.moeyard.engine.schedule;
