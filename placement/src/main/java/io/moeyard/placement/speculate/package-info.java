/**
 * Speculative token shuffling: put each token, before a layer's dispatch, on the rank that most
 * likely holds the experts it is about to choose, so that more of its activations are served
 * where it already is.
 *
 * <p>Nothing here decides what the model computes. The gate still routes every token; a token
 * placed on the wrong rank is dispatched to its real experts like any other, and only pays the
 * traffic it would have paid from home. The gain is a bet on routing being predictable from
 * routing: a token's experts at earlier layers say much about its experts at the next.
 *
 * <p>The parts, in the order an engine meets them:
 *
 * <ul>
 *   <li>{@link io.moeyard.placement.speculate.AffinityModel}: counts from a training trace, per
 *       layer, of which experts follow which one and two layers back; written and read as JSON.
 *   <li>{@link io.moeyard.placement.speculate.ExpertPredictor}: from those counts and a token's
 *       experts at l-1 and l-2, a probability for each expert at l.
 *   <li>{@link io.moeyard.placement.speculate.ExpertGrouping}: a balanced placement that puts
 *       experts chosen together on one rank, with ranks labelled so that groups tokens travel
 *       between keep their label from layer to layer. Speculation cannot make local what the
 *       placement scatters, so the placement is half the method.
 *   <li>{@link io.moeyard.placement.speculate.SpeculativeShuffler}: per layer, each rank's worth
 *       for each token (its expected local activations; with ranks in several nodes, by default,
 *       less the rows it is expected to send across nodes from there, see
 *       {@link io.moeyard.placement.speculate.SpeculativeShuffler.Objective}), then an assignment
 *       that keeps every rank within 10% of the mean token count
 *       ({@link io.moeyard.placement.speculate.CapacityAssignment}), and the permutation
 *       ({@link io.moeyard.placement.speculate.Shuffle}) that lays tokens out rank by rank and
 *       restores their order at the end.
 *   <li>{@link io.moeyard.placement.speculate.SpeculationReport}: local activations, prediction
 *       accuracy, tokens per rank, balance, cross-rank rows and rows crossing nodes, against
 *       tokens that stay home.
 * </ul>
 *
 * <p>Causality is the one rule: the rank of a token at layer l is computed from its routing at
 * layers below l only (and from the other tokens' routing below l, through the capacities), so
 * the shuffle can ride on layer l-1's combine. Layer 0 is home: no routing is known yet.
 */
package io.moeyard.placement.speculate;
