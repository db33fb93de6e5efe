package io.moeyard.engine.transport;

import java.lang.foreign.MemorySegment;

/**
 * A transport's names for the memory peers can reach: writes a descriptor of a segment this rank
 * publishes (whose memory, where, how long) and resolves a peer's descriptor to this process's
 * view of the same bytes.
 */
public interface SegmentTable {
  /** Writes a descriptor of {@code segment}, which must lie in memory peers can reach. */
  void describe(MemorySegment segment, MessageWriter out);

  /** This process's view of the segment a peer described. */
  MemorySegment resolve(MessageReader in);
}
