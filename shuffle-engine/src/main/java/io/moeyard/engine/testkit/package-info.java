/**
 * The test kit's seed policy, {@link io.moeyard.engine.testkit.TestSeed}: every randomized test of
 * every module draws from a fresh seed per run, names it in its failure messages and replays with
 * {@code -Dmoeyard.test.seed=N}. It is main code of the lowest module so that the tests of every
 * module (this one and placement included, which see no other module's tests) share the one class;
 * the naive reference and the random workloads of the data path are in {@code io.moeyard.testkit}
 * (combine module), beside the collectives they check.
 */
package io.moeyard.engine.testkit;
