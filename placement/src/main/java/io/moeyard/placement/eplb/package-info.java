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
 *   <li>sorting is descending and stable (torch's CPU sort keeps equal keys in index order);
 *   <li>the replicated expert is the first maximum ({@code torch.max} indices), the chosen pack the
 *       first minimum among packs with room (Python's {@code min});
 *   <li>a pack that must take exactly one item keeps the identity order, as EPLB short-cuts it;
 *   <li>the hierarchical policy runs iff {@code groups % nodes == 0}, otherwise the global policy
 *       (one group, one node).
 * </ul>
 *
 * <p>Robust planning over several traces hands EPLB the sum of the loads: that is what a user who
 * concatenates their traces would give it, and the fair baseline for a worst-case planner.
 */
package io.moeyard.placement.eplb;
