package io.moeyard.engine.transport;

import io.moeyard.engine.Topology;

/**
 * One rank's endpoint into its world: how collectives exchange their small metadata and reach
 * their peers' buffers. Collectives are SPMD: every rank of the world calls the same collective
 * in the same order from its own thread (or process).
 *
 * <p>Implementations: {@link CpuWorld}'s in-JVM transport (ranks are threads, peers' segments are
 * written directly). GPU transports (CUDA peer stores, NCCL) implement the same exchange.
 */
public interface Transport {
  int rank();

  int size();

  Topology topology();

  /**
   * Every rank contributes {@code mine}; returns all contributions indexed by rank. It is also a
   * barrier: no rank returns before all have arrived, and everything a rank wrote before calling
   * is visible to every rank after it returns.
   *
   * @throws io.moeyard.engine.CollectiveTimeoutException naming the ranks that did not arrive
   * @throws io.moeyard.engine.CollectiveException when another rank aborted the world
   */
  Object[] allGather(Object mine);

  /** {@link #allGather} with nothing to say. */
  default void barrier() {
    allGather(null);
  }

  /**
   * Fails every rank's current and future collective calls with {@code cause}: the way out when
   * this rank hit an error the others cannot know about, so that they fail at once instead of
   * waiting for the timeout.
   */
  void abort(Throwable cause);

  /** True when a peer's published memory segments can be stored into directly. */
  boolean peerStores();
}
