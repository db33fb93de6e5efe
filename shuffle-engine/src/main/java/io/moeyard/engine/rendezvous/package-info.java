/**
 * The process world's rendezvous: ranks that are separate processes find each other with the
 * torchrun convention ({@link io.moeyard.engine.rendezvous.RankEnv}), rank 0 serves a small TCP
 * store, every rank registers its configuration and the store checks that all agree, then
 * {@link io.moeyard.engine.rendezvous.ProcessWorld} exchanges byte blobs (all-gather, barrier)
 * through it, also among a fixed subset of ranks (the machines' leaders of
 * {@code io.moeyard.engine.shm.ClusterTransport}), and a rank can fail the world naming the ranks
 * it found missing. Every wait is bounded; a rank that never arrives, leaves, or disagrees fails every
 * other rank with a {@link io.moeyard.engine.rendezvous.RendezvousException} naming it.
 *
 * <p>This is the control plane only: the data of a dispatch or combine never goes through the
 * store, which carries what the data transports need to find each other (NCCL unique ids, IPC
 * handles, shared-memory names).
 *
 * <p>{@link io.moeyard.engine.rendezvous.StoreTransport} is a
 * {@link io.moeyard.engine.transport.Transport} made of the store alone, for ranks that share
 * nothing else (between machines, {@code ClusterTransport} meets faster): typed all-gathers, barriers, an abort that the store passes to every rank at once, and
 * a grouped send/receive whose bytes travel through the store. It has no peer memory, so it serves
 * a device backend's host meetings, not the CPU data path.
 */
package io.moeyard.engine.rendezvous;
