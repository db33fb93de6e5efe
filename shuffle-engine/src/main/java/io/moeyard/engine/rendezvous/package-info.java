/**
 * The process world's rendezvous: ranks that are separate processes find each other with the
 * torchrun convention ({@link io.moeyard.engine.rendezvous.RankEnv}), rank 0 serves a small TCP
 * store, every rank registers its configuration and the store checks that all agree, then
 * {@link io.moeyard.engine.rendezvous.ProcessWorld} exchanges byte blobs (all-gather, barrier)
 * through it. Every wait is bounded; a rank that never arrives, leaves, or disagrees fails every
 * other rank with a {@link io.moeyard.engine.rendezvous.RendezvousException} naming it.
 *
 * <p>This is the control plane only: the data of a dispatch or combine never goes through the
 * store, which carries what the data transports need to find each other (NCCL unique ids, IPC
 * handles, shared-memory names).
 */
package io.moeyard.engine.rendezvous;
