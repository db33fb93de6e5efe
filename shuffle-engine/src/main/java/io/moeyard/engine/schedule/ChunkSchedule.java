package io.moeyard.engine.schedule;

/**
 * The order in which a rank pushes its work to its peers: chunks of at most {@code chunk} items,
 * round-robin over the peers, peers visited in rotated order starting at {@code self + 1} (self
 * last). Rotation keeps every receiver from being hit by all senders at once (traffic
 * dispersion); chunking bounds how long one peer monopolises the sender, so that all receivers
 * make progress together and a staged transport can overlap packing with transfer.
 */
public final class ChunkSchedule {
  /** Receives one chunk: items {@code [from, to)} of {@code peer}'s list. */
  @FunctionalInterface
  public interface ChunkVisitor {
    void visit(int peer, int from, int to);
  }

  private ChunkSchedule() {}

  /** Peer visited at {@code step} (0-based) by {@code self} in a world of {@code size}. */
  public static int rotatedPeer(int self, int step, int size) {
    return (self + 1 + step) % size;
  }

  /**
   * Visits every item of every peer exactly once. {@code count[peer]} is the peer's item count.
   * Within one peer, items are visited in ascending order (receivers rely on it).
   */
  public static void forEachChunk(int self, int[] count, int chunk, ChunkVisitor visitor) {
    if (chunk <= 0) throw new IllegalArgumentException("chunk must be > 0, got " + chunk);
    int size = count.length;
    int max = 0;
    for (int c : count) max = Math.max(max, c);
    for (int from = 0; from < max; from += chunk) {
      for (int step = 0; step < size; step++) {
        int peer = rotatedPeer(self, step, size);
        if (from < count[peer]) visitor.visit(peer, from, Math.min(count[peer], from + chunk));
      }
    }
  }
}
