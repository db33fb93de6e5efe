/**
 * JMH benchmarks of the pieces the {@code moeyard bench} figures are made of. Run them through
 * {@code ./moeyard jmh [JMH options] [benchmark regex]} (JMH forks with the launcher's class path).
 */
package io.moeyard.bench.jmh;
