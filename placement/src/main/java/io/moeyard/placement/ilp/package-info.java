/**
 * The CP-SAT expert-placement planner ({@code --algorithm ilp}), MoETuner-style.
 *
 * <h2>What it optimises</h2>
 *
 * <p>Slots are GPU-major (slot p on GPU p / (P/G), GPU g on node g / (G/N)); a GPU's load is the sum
 * over its slots of load(expert) / replicas(expert); balancedness = mean / max GPU load. A token
 * that goes from expert a at layer l to expert b at layer l + 1 is a <em>transition</em>; it is
 * GPU-local (node-local) when SOME replica of a and SOME replica of b share a GPU (node) — with
 * replicas the runtime may pick the replica next to the token, so the optimistic reading is the
 * one a placement can exploit. The affinity cost is
 * {@code gpuWeight x cross-GPU transitions + nodeWeight x cross-node transitions}
 * (+ the same for the heaviest same-layer co-activated pairs when enabled, which saves dispatch rows
 * by dedup). Balance is a constraint, not a term: every layer's max GPU load stays within
 * (1 + eps) of the warm start's (EPLB's), so mean balancedness stays within ~eps of EPLB's.
 *
 * <h2>Decomposition: layer by layer, replica counts fixed</h2>
 *
 * <p>The joint problem (all layers at once) is quadratic in the placement variables; with layer
 * l - 1 fixed, layer l's transition cost is linear. So the planner does a forward pass:
 *
 * <ol>
 *   <li>Replica counts per layer come from the warm start (EPLB: most load per replica first), or,
 *       with several workloads, from the same rule on the worst load normalised per workload.
 *   <li>The warm start's layer is <em>relabelled</em>: whole GPU contents are permuted (a G x G
 *       linear assignment, solved exactly by the Hungarian algorithm) to maximise the local weight
 *       with the previous layer. This keeps every load, so it is free balance-wise, and is the hint.
 *   <li>CP-SAT then solves the layer: integer {@code n[e][g]} (replicas of e on GPU g; a boolean
 *       {@code y[e][g]} for single-replica experts, which is most of them), {@code sum_g n[e][g] =
 *       replicas(e)}, {@code sum_e n[e][g] = P/G}, and per workload and GPU
 *       {@code sum_e q[e] n[e][g] <= cap}, loads scaled to integers with the layer's mean GPU load
 *       = 10^6 (rounding error &lt;= P/G / 2 units, i.e. 10^-5 relative). The objective is linear:
 *       for a single-replica expert, being on GPU g gains the (fixed) tokens from experts with a
 *       replica on g plus the node weight of tokens from g's node; for replicated experts a
 *       presence boolean per node carries the node term; only pairs where both sides are
 *       replicated (an OR over several GPUs on both sides) get a pair variable {@code z <= sum y}.
 *       Co-activation pairs (both experts variable) use a reified equality of GPU / node indices.
 *   <li>The layer keeps CP-SAT's answer only if its exact cost is not above the hint's and the cap
 *       holds; at the end the whole plan is compared with the warm start (total cost and
 *       per-layer balance) and the warm start is returned if it is better. So: never worse.
 * </ol>
 *
 * <p>The time limit is total: each layer gets (time left) / (layers left), so an easy layer that
 * proves optimality early leaves time to later ones. Optionally ({@code refineFraction > 0}) the
 * remaining time goes to sweeps that re-solve each layer with both neighbours fixed (the cost is
 * still linear in the layer's variables).
 *
 * <h2>Several workloads (robust placement)</h2>
 *
 * <p>With {@code loads.length > 1}, each workload's loads are scaled to the same mean, and a first
 * CP-SAT phase per layer minimises the worst scaled GPU load over workloads and GPUs (a min-max
 * objective), starting from a greedy robust packing; a second phase caps that at (1 + eps) x the
 * best found and minimises the affinity cost.
 *
 * <h2>Load-only problems</h2>
 *
 * <p>Without transitions (a {@code logical_count} trace) the per-layer model just minimises the max
 * GPU load with the warm start's replica counts; the reported objective is then the sum over layers
 * of max / mean GPU load (worst over workloads), and the bound the sum of CP-SAT's bounds on it.
 *
 * <h2>Reported objective and bound</h2>
 *
 * <p>With affinity: the objective is the exact affinity cost of the returned plan; the bound is the
 * sum of CP-SAT's per-layer bounds in the forward pass, i.e. a bound for the layer-by-layer
 * decomposition (given the earlier layers as placed), not for the joint problem (NaN after
 * refinement sweeps, where the per-layer bounds no longer add up).
 *
 * <h2>Why this and not cluster-then-assign</h2>
 *
 * <p>See the measurements in the branch notes: on the ESFT traces (64 experts, 16 GPUs) each layer
 * is small enough for CP-SAT to prove or nearly prove optimality in its share of 60 s; on a
 * DeepSeek-V3 shape (256 experts, 64 GPUs) the relabelled hint alone already removes most of the
 * cross-node traffic, and CP-SAT improves on it from the hint.
 */
package io.moeyard.placement.ilp;
