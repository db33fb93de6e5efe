/**
 * The data-path test kit: {@link io.moeyard.testkit.NaiveReference}, the contract of dispatch and
 * combine (shuffle-engine/docs/data-path.md) as plain loops, and {@link io.moeyard.testkit.Workload},
 * the random problems every backend is checked on with it. The seed policy that goes with them is
 * {@link io.moeyard.engine.testkit.TestSeed}.
 *
 * <p>Main code, not test code, because {@code moeyard selftest} and the bench's verification run
 * them at run time; and in this module because it is the lowest one that has both dispatch and
 * combine (the workload builds {@code Routing}s and {@code CommConfig}s), and every user of the kit
 * depends on it: this module's tests, the native module's tests (the CUDA backend against the
 * same reference) and the bench. The kit never calls the collectives, so it cannot agree with
 * them by sharing a bug.
 */
package io.moeyard.testkit;
