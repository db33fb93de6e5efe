/**
 * The process world's data transport on one host: {@link io.moeyard.engine.shm.ShmTransport}
 * maps every rank's shared-memory files into every rank, so collectives store straight into peer
 * processes' buffers exactly as ranks that are threads do, and exchange their per-call messages
 * through a shared-memory control block with sequence numbers. Point-to-point messages
 * ({@code Transport.sendRecv}) are packed in the sender's shared memory and copied out by the
 * receiver. Files are named per job and
 * unlinked as soon as all ranks mapped them ({@link io.moeyard.engine.shm.ShmFiles}); a dead peer
 * is noticed by its pid within milliseconds (in a collective's wait, and between collectives by
 * {@code checkPeers}, which waits outside the transport poll) and every wait is bounded by a
 * timeout that names the ranks it waited for.
 *
 * <p>{@link io.moeyard.engine.shm.ClusterTransport} serves ranks on any machines (a device backend's
 * host meetings, and the CPU data path's fused node-level path):
 * the ranks of each machine meet through a control block of their own, and only the machines'
 * leaders (lowest world rank of each) meet between machines, at the rendezvous store; its peer
 * memory is the same files, mapped by the ranks of the owner's machine only. Its
 * {@code sendRecv} copies out of that memory within a machine and sends everything else over
 * direct TCP connections between ranks ({@code PeerLinks}).
 */
package io.moeyard.engine.shm;
