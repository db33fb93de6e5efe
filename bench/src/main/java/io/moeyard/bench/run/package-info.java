/**
 * Benchmark runners behind {@code moeyard bench}: every figure is measured side by side with its
 * baseline and the copy roofline in one run, and only reported after the outputs were verified.
 */
package io.moeyard.bench.run;
