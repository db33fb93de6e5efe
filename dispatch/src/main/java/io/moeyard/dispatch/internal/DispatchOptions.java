package io.moeyard.dispatch.internal;

/**
 * Tunables of a dispatcher.
 *
 * @param chunkPairs token-rank pairs a sender moves to one peer before turning to the next (the
 *     pipelining granularity; see {@link io.moeyard.engine.schedule.ChunkSchedule})
 */
public record DispatchOptions(int chunkPairs) {
  /** Measured on the default bench (see README): small enough to interleave peers, big enough to amortise the turn. */
  public static final int DEFAULT_CHUNK_PAIRS = 128;

  public DispatchOptions {
    if (chunkPairs <= 0) throw new IllegalArgumentException("chunkPairs must be > 0, got " + chunkPairs);
  }

  public static DispatchOptions defaults() {
    return new DispatchOptions(DEFAULT_CHUNK_PAIRS);
  }
}
