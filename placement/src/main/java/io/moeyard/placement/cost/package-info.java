/**
 * What a placement costs, measured the same way for every planner.
 *
 * <p>Two views, because they need different inputs. {@link io.moeyard.placement.cost.CostModel}
 * works from aggregate counts (loads per expert, layer-to-layer pair counts): it is what a planner
 * can optimise and what a load-only trace allows, and it is cheap enough to call inside a search.
 * {@link io.moeyard.placement.cost.DispatchModel} replays a per-token trace: it needs to know which
 * experts each token chose to count dispatch rows with dedup (one row per token and destination
 * GPU, however many of its experts live there), which aggregate counts cannot tell. It picks
 * replicas by the data path's own rule ({@code ExpertMap.chooseSlot} on the layer's
 * {@link io.moeyard.placement.model.Placement#expertMap expert map}), with the trace split over
 * GPUs as {@link io.moeyard.placement.cost.TokenSplit} says, so the model and the data path never
 * disagree on which replica a token uses. {@link io.moeyard.placement.cost.WireRows} counts what
 * one layer of that dispatch writes per rank, the bench's {@code rows} block.
 *
 * <p>Balancedness is SGLang's mean GPU load / max GPU load, so figures compare with what SGLang's
 * recorder prints. A replica takes an equal share of its expert's load: engines split an expert's
 * tokens over its replicas, and equal shares are what EPLB itself assumes.
 *
 * <p>Which replica a transition uses is the dispatcher's choice, so it is a parameter ({@link
 * io.moeyard.placement.cost.ReplicaRule}); {@code moeyard plan} defaults to {@code NEAREST}, the
 * rule of moeyard's own dispatcher (its expert map prefers the token's rank, then its node) and of
 * the token-level replay, and offers {@code UNIFORM} for engines that spread a hot expert's tokens.
 */
package io.moeyard.placement.cost;
