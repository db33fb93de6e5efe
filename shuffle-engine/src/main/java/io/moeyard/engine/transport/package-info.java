/**
 * Transports: how ranks meet and reach each other's memory. {@link io.moeyard.engine.transport.Transport}
 * is the SPI (an all-gather that doubles as a barrier, abort, and whether peer stores are
 * possible; the memory peers can store into, {@link io.moeyard.engine.transport.PeerMemory}; and
 * typed messages with a {@link io.moeyard.engine.transport.MessageCodec}, which ranks of one JVM
 * pass as objects and process transports encode, naming segments by descriptors that each process
 * resolves, {@link io.moeyard.engine.transport.SegmentTable}; and a grouped point-to-point
 * exchange of packed messages, {@link io.moeyard.engine.transport.Transport#sendRecv}, the shape
 * an NCCL transport serves with grouped send/recv, which the node-level path's cross-node leg
 * uses);
 * {@link io.moeyard.engine.transport.CpuWorld} is the embedded in-JVM world,
 * {@code io.moeyard.engine.shm} the world of processes on one host ({@code ShmTransport}) and the
 * host meetings of ranks on any machines ({@code ClusterTransport}: shared memory within a machine,
 * peer memory that only the ranks of its machine reach ({@link io.moeyard.engine.transport.Transport#reaches}),
 * the machines' leaders at the rendezvous store between them;
 * {@link io.moeyard.engine.transport.Transport#machineBarrier} waits for one machine), and
 * {@code io.moeyard.engine.rendezvous.StoreTransport} ranks that share nothing but the rendezvous
 * store (every meeting a round of the store). {@link io.moeyard.engine.transport.Machines} is the
 * rule for a world spanning machines: each node within one machine, and only the fused node-level
 * path, whose stores stay within the node. Every wait is bounded: a rank
 * that never arrives makes the others fail with a timeout naming it.
 */
package io.moeyard.engine.transport;
