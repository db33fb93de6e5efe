/**
 * DeepSeek's Expert Parallelism Load Balancer (deepseek-ai/EPLB), reimplemented in Java.
 *
 * <p>Why a reimplementation and not an approximation: EPLB is the baseline every placement claim
 * is measured against, and users compare our plans with the JSON their own EPLB run wrote. A
 * baseline that differs in a tie is a different baseline. So the code follows EPLB's three steps
 * (pack expert groups to nodes, replicate within each node by highest load per replica, pack the
 * node's replicas to its GPUs) and its numerics:
 *
 * <ul>
 *   <li>weights are cast to float32 first, and per-replica loads and pack sums are float32, as
 *       {@code weight.float()} makes them;
 *   <li>the packing sort is descending, equal weights in index order (see below);
 *   <li>the replicated expert is the first maximum ({@code torch.max} indices), the chosen pack the
 *       first minimum among packs with room (Python's {@code min});
 *   <li>a pack that must take exactly one item keeps the identity order, as EPLB short-cuts it;
 *   <li>the hierarchical policy runs iff {@code groups % nodes == 0}, otherwise the global policy
 *       (one group, one node).
 * </ul>
 *
 * <p>Ties. EPLB sorts with torch's default, unstable sort, whose order among equal weights depends
 * on the torch build and the CPU: libstdc++'s introsort (stable up to 16 items, not beyond) or,
 * in x86 builds with x86-simd-sort, a vectorised quicksort. No single order is "EPLB's", so ties
 * go by index, which is what {@code sort(stable=True)} gives and what libstdc++ gives for up to
 * 16 items. Checked against eplb.py itself (the recorded cases in the tests): identical
 * {@code phy2log} and {@code logcnt} for distinct weights with the unmodified code, and identical
 * {@code phy2log}, {@code log2phy} and {@code logcnt} with many ties against its stable-sort
 * variant. Tied items have equal weight, so a different tie order moves labels, never load:
 * balancedness is the same either way. Ties are common in real traces (an expert's replicas always
 * tie, token counts often do): on the ESFT traces (80 slots, 16 GPUs) this code equals the
 * stable-sort eplb.py in all 26 layers and torch 1.13's default order in 8 to 12 of them, with
 * identical balancedness. For the same reason EPLB's {@code log2phy} may list an
 * expert's replicas in another order (replicas of one expert always tie).
 *
 * <p>Robust planning over several traces hands EPLB the sum of the loads: that is what a user who
 * concatenates their traces would give it, and the fair baseline for a worst-case planner.
 */
package io.moeyard.placement.eplb;
