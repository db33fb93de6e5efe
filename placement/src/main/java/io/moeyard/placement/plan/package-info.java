/**
 * From traces to a plan: the {@link io.moeyard.placement.model.PlacementProblem} every planner
 * reads, and the planners that need no solver (trivial, EPLB).
 *
 * <p>Several traces are several workloads. Their loads are kept apart because the point of
 * planning on several is robustness: loads shift between workloads (on the ESFT traces, EPLB
 * planned on three tasks keeps only about half its balance on the fourth), so the CP-SAT planner
 * minimises the worst of them. EPLB has no notion of workloads; it gets their sum, which is what
 * a user would hand it.
 *
 * <p>When the workload to serve is none of the traced ones, the worst of them is the wrong
 * target: a packing fitted to them does not carry over. {@link io.moeyard.placement.plan.LoadForecast}
 * gives the loads to plan for instead: the traces' mean, shrunk towards uniform by a slope fitted
 * leaving one trace out ({@code moeyard plan --robust unseen}).
 */
package io.moeyard.placement.plan;
