package io.moeyard.engine.transport;

import io.moeyard.engine.Topology;
import java.lang.foreign.MemorySegment;

/**
 * One rank's endpoint into its world: how collectives exchange their small metadata and reach
 * their peers' buffers. Collectives are SPMD: every rank of the world calls the same collective
 * in the same order from its own thread (or process).
 *
 * <p>Implementations: {@link CpuWorld}'s in-JVM transport (ranks are threads, peers' segments are
 * written directly) and {@code io.moeyard.engine.shm.ShmTransport} (ranks are processes of one
 * host, peers' segments are shared-memory mappings, written directly too),
 * {@code io.moeyard.engine.shm.ClusterTransport} (ranks on any machines: shared memory within a
 * machine, peer memory too, the machines' leaders through the rendezvous store) and
 * {@code io.moeyard.engine.rendezvous.StoreTransport} (ranks on any machines, every exchange
 * through the rendezvous store; no peer memory). GPU transports (CUDA peer stores, NCCL) implement
 * the same exchange.
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
   * The machine rank {@code r} runs on, as this transport groups its ranks: ranks with the same
   * index share a machine (memory, and device events within it), and {@link #machineBarrier} waits
   * for exactly those. The default groups every rank into machine 0, where a machine barrier is
   * the world's: a transport that does not know its machines is never too narrow.
   */
  default int machineOf(int r) {
    return 0;
  }

  /**
   * A barrier among the ranks of this rank's machine ({@link #machineOf}) only, for what the ranks
   * of one machine alone wait on (a device event a peer process records, a store into shared
   * memory): everything such a rank wrote before calling is visible to the others after it
   * returns. A collective: every rank of the world calls it at the same place in its order, but a
   * rank waits only for its machine, so a world spanning machines does not pay a round between
   * machines for it. The default is {@link #barrier()}, which is also one.
   *
   * @throws io.moeyard.engine.CollectiveTimeoutException naming the ranks of the machine that did not arrive
   * @throws io.moeyard.engine.CollectiveException when another rank aborted the world
   */
  default void machineBarrier() {
    barrier();
  }

  /**
   * Fails every rank's current and future collective calls with {@code cause}: the way out when
   * this rank hit an error the others cannot know about, so that they fail at once instead of
   * waiting for the timeout.
   */
  void abort(Throwable cause);

  /**
   * Checks, without waiting, what this transport knows of its world, and throws what its next
   * collective would: a {@link io.moeyard.engine.CollectiveException} once a rank aborted the world,
   * a {@link io.moeyard.engine.CollectiveTimeoutException} naming a peer found dead or gone. For
   * waits that happen outside the transport (a device stream waiting for a peer's event, NCCL's
   * set-up) and would otherwise end only at their own timeout when a peer dies: they call this
   * now and then (it may make a system call; every few milliseconds is fine, not every spin).
   * Not a collective. The default knows nothing beyond the collectives and returns.
   */
  default void checkPeers() {}

  /**
   * True when every rank can store directly into every peer's published memory segments (its
   * {@link #peerMemory}); {@link #reaches} tells it peer by peer.
   */
  boolean peerStores();

  /**
   * True when this rank can store into (and read) {@code peer}'s {@link #peerMemory}, so that a
   * segment {@code peer} publishes resolves to its memory here. It exists for transports whose
   * ranks share memory only within a machine: there {@link #peerStores()} is false, yet the ranks
   * of one machine reach each other, and a path that stores directly only within its machine (and
   * sends what crosses machines with {@link #sendRecv}) can run. The default: this rank itself,
   * or every rank where {@link #peerStores()}.
   */
  default boolean reaches(int peer) {
    return peer == rank() || peerStores();
  }

  /**
   * {@link #allGather(Object)} of a typed message that {@code codec} can carry across a process
   * boundary. Ranks that share this JVM pass the objects themselves (the codec is not used);
   * process transports encode, exchange the bytes, and decode every peer's message, resolving the
   * segments it names to this process's mappings.
   */
  default <T> Object[] allGather(T mine, MessageCodec<T> codec) {
    return allGather(mine);
  }

  /**
   * A grouped point-to-point exchange (a collective: every rank calls it): {@code send[p]} is the
   * packed message for peer p and {@code recv[p]} is where p's message to this rank lands, each a
   * segment of exactly the message's bytes (null or empty: nothing), the per-peer (pointer, bytes)
   * of grouped {@code ncclSend}/{@code ncclRecv}. Sizes must be known on both sides beforehand
   * (from a collective's announcements); a sender/receiver mismatch fails every rank, naming
   * them, before anything is copied. Returns when every message to this rank has arrived. A send
   * buffer may be refilled or freed once the next collective call on this transport (any of them,
   * a barrier included) has returned: receivers may still be reading it until then. On transports
   * whose receivers read the sender's memory but are not one address space, the send segments must
   * lie in {@link #peerMemory}; a transport that carries the bytes themselves takes any segment.
   *
   * <p>The default serves ranks that can read each other's peer memory (threads of one JVM,
   * processes of one host): one all-gather of the posted segments, then one copy per message out
   * of the sender's memory. It adds no closing barrier: the collectives that use it are followed
   * by another collective call before they touch their send buffers again.
   */
  default void sendRecv(MemorySegment[] send, MemorySegment[] recv) {
    PointToPoint.run(this, send, recv);
  }

  /**
   * Memory of at least {@code bytes} that this rank's peers can store into, owned by the caller.
   * A collective on process transports (every rank calls it, in the same order; each may ask for
   * a different size): there it is a shared-memory file mapped by every peer that {@link #reaches}
   * it, so it is sized once, when a communicator is built, never per call. Ranks that share this JVM get plain off-heap
   * memory ({@link PeerMemory#offHeap()}), unbounded; a transport without shared memory throws
   * UnsupportedOperationException.
   */
  default PeerMemory peerMemory(long bytes) {
    return PeerMemory.offHeap();
  }

  /**
   * True when ranks share this JVM's address space, so any segment (even per-call memory) can be
   * handed to a peer; false for process transports, where only {@link #peerMemory} can.
   */
  default boolean sharesAddressSpace() {
    return true;
  }

  /** True when peers can store into {@code segment} (always, for ranks that share this JVM). */
  default boolean reachable(MemorySegment segment) {
    return true;
  }
}
