/**
 * The CP-SAT expert-placement planner ({@code --algorithm ilp}), MoETuner-style.
 *
 * <h2>What it optimises</h2>
 *
 * <p>Slots are GPU-major (slot p on GPU p / (P/G), GPU g on node g / (G/N)); a GPU's load is the sum
 * over its slots of load(expert) / replicas(expert); balancedness = mean / max GPU load. A token
 * that goes from expert a at layer l to expert b at layer l + 1 is a <em>transition</em>; it is
 * GPU-local (node-local) when SOME replica of a and SOME replica of b share a GPU (node): a
 * dispatcher that prefers the nearest replica realises that ({@code ReplicaRule.NEAREST} in the
 * {@code cost} package, {@code moeyard plan}'s default). The other rule, {@code UNIFORM}, takes a
 * uniform replica choice (local with probability = the shared fraction of replicas), which
 * credits replicated pairs less; {@link io.moeyard.placement.ilp.CpSatTuning#uniformReplicaChoice()}
 * makes the planner optimise that rule (then every term is linear in {@code n[e][g]}, no OR
 * variables, and CP-SAT's bounds get tight: gap ~2% instead of ~13%). The measurement driver reports both. The affinity cost is
 * {@code gpuWeight x cross-GPU transitions + nodeWeight x cross-node transitions}
 * (+ the same for the heaviest same-layer co-activated pairs when enabled). Balance is a
 * constraint, not a term: every layer's max GPU load stays within (1 + eps) of the warm start's
 * (EPLB's), so mean balancedness stays within ~eps of EPLB's.
 *
 * <h2>Decomposition: layer by layer, replica counts fixed</h2>
 *
 * <p>The joint problem (all layers at once) is a quadratic assignment; with layer l - 1 fixed,
 * layer l's transition cost is linear in layer l's variables. So:
 *
 * <ol>
 *   <li>Replica counts per layer come from the warm start (EPLB: most load per replica first), or,
 *       with several workloads, from the same rule on the worst load normalised per workload.
 *       Where the warm start's packing is loose (hierarchical EPLB on flat loads), counts chosen
 *       for locality take their place ({@link io.moeyard.placement.ilp.LocalityReplicas}): copies
 *       go where the trace says they keep the most transitions local (a second copy beside an
 *       expert's next block of partners; copies on other nodes for experts whose partners spread
 *       wide), provided the packing of those counts leaves 2% of the warm start's max GPU load free
 *       and they are estimated to be worth 5% more. With the nearest-replica rule only; where they
 *       apply and what they gain: placement/README.md.
 *   <li><b>Relabel</b>: the warm start's layer has its whole GPU contents permuted (a G x G linear
 *       assignment, solved exactly by the Hungarian algorithm) to maximise the local weight with the
 *       previous layer. Loads do not change, so this is free balance-wise.
 *   <li><b>Swap search</b>: first-improvement pairwise slot swaps that keep every GPU under the load
 *       cap, then iterated (a few random feasible swaps, descend again, keep the best) for the
 *       search's share of the layer's time.
 *   <li><b>CP-SAT</b>, hinted with that row: integer {@code n[e][g]} (replicas of e on GPU g; a
 *       boolean {@code y[e][g]} for single-replica experts, most of them), {@code sum_g n[e][g] =
 *       replicas(e)}, {@code sum_e n[e][g] = P/G}, and per workload and GPU {@code sum_e q[e]
 *       n[e][g] <= cap}, loads scaled to integers with the layer's mean GPU load = 10^6 (rounding
 *       error &lt;= P/G / 2 units, i.e. 10^-5 relative). The objective is linear: a single-replica
 *       expert on GPU g gains the (fixed) tokens from experts with a replica on g plus the node weight
 *       of tokens from g's node; replicated experts get a presence boolean per node for the node
 *       term; only pairs where both sides are replicated (an OR over several GPUs on both sides) get
 *       a pair variable {@code z <= sum y}. Co-activation pairs (both experts variable) use a
 *       reified equality of GPU / node indices. The layer keeps CP-SAT's row only if its exact cost
 *       is not above the hint's and the cap holds.
 *   <li><b>Refinement sweeps</b> ({@code refineFraction} of the time, and whatever the forward pass
 *       left): every layer again with both neighbours fixed (still linear), swap search then
 *       CP-SAT; each sweep takes half of the time left, until a sweep gains nothing.
 *   <li>At the end the whole plan is compared with the warm start (total cost and per-layer
 *       balance) and the warm start is returned if it is better. So: never worse.
 * </ol>
 *
 * <p>The time limit is total: each layer gets (time left) / (layers left). When CP-SAT finds no
 * solution in three layers' shares in a row (the DeepSeek-V3 shape: 256 experts x 64 GPUs = 16k
 * booleans per layer, under a second each on 2 cores), it is switched off and the swap search gets
 * the time.
 *
 * <h2>Why this decomposition</h2>
 *
 * The measurements behind each step (CP-SAT alone, the swap search, sweeps, co-activation
 * terms, weights, the defaults, leave-one-out) are in placement/README.md, "Why the planner is
 * built this way".
 *
 * <h2>Several workloads (robust placement)</h2>
 *
 * <p>With {@code loads.length > 1}, each workload's loads are scaled to the same mean (so the
 * objective is the worst balancedness over workloads, not dominated by the longest trace), and a
 * first CP-SAT phase per layer minimises the worst scaled GPU load over workloads and GPUs (a
 * min-max objective), starting from a greedy robust packing; the affinity phase then caps that at
 * (1 + eps) x the best found.
 *
 * <h2>A workload none of the traces is ({@code planForUnseen})</h2>
 *
 * <p>Balance is judged on a forecast (the traces' mean load shrunk towards uniform, see
 * {@code io.moeyard.placement.plan.LoadForecast}), and the warm start is EPLB on it. There is no
 * min-max phase: re-packing to minimise the traced workloads' max load fitted the packing to them
 * and cost the held-out ESFT task 0.01-0.03 balancedness against EPLB's packing of the forecast.
 * The locality phase runs as for one workload, with one cap per workload: the forecast and each
 * traced workload keep every GPU within (1 + eps) of the warm start's max load for that workload.
 * The model scales each workload so that the warm start's max is the same for all, and one
 * integer cap then serves them all. With the forecast's cap alone (nearly uniform loads pass
 * almost any packing) the traced workloads' own mean balancedness fell to 0.53-0.61 (EPLB on
 * their sum: 0.68-0.72); with the caps it stays at 0.66-0.74. The caps do not protect the held-out
 * task: with GPU-level locality it lost 0.04-0.06 balancedness (mean of four folds, two runs)
 * against EPLB's packing of the forecast, with or without them. That loss is the price of
 * locality on a workload whose hot experts are unknown, and it is why {@code moeyard plan}
 * defaults to node-level locality in this mode (the same cross-node cut, 0.04 more held-out
 * balancedness than GPU-level; tables in placement/README.md).
 *
 * <h2>Load-only problems</h2>
 *
 * <p>Without transitions (a {@code logical_count} trace) the per-layer model minimises the max GPU
 * load with the warm start's replica counts; the reported objective is then the sum over layers of
 * max / mean GPU load (worst over workloads), and the bound the sum of CP-SAT's bounds on it.
 *
 * <h2>Reported objective and bound</h2>
 *
 * <p>With affinity: the objective is the exact affinity cost of the returned plan. The bound is,
 * summed over layers, a lower bound on that layer's cost terms (transitions from the previous
 * layer, co-activations) for ANY placement of the layer against the previous layer as finally
 * placed: CP-SAT's proven bound where that previous layer is still the forward pass's, else a
 * relaxation (each expert on its best GPUs and nodes, ignoring capacity and balance). It is a bound
 * for the layer-by-layer decomposition, not for the joint problem (a quadratic assignment, out of
 * reach at these sizes); the gap says how much any single layer could still gain.
 */
package io.moeyard.placement.ilp;
