package io.moeyard.engine.testkit;

import java.util.SplittableRandom;

/**
 * The seed of one run of a randomized test: fresh every run, unless {@code -Dmoeyard.test.seed=N}
 * replays the run that printed N. A random test draws everything from it (cases from {@code
 * value() + i}) and names it in every failure message: through {@link #toString()}, or by running
 * its body in {@link #check}, which prefixes whatever the body throws with the seed.
 */
public record TestSeed(long value) {
  /** The system property that replays a run. */
  public static final String PROPERTY = "moeyard.test.seed";

  /** {@code -Dmoeyard.test.seed} when set, else a fresh seed. */
  public static TestSeed fresh() {
    String fixed = System.getProperty(PROPERTY);
    if (fixed == null || fixed.isBlank()) return new TestSeed(System.nanoTime());
    try {
      return new TestSeed(Long.parseLong(fixed.strip()));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("-D" + PROPERTY + " must be a whole number, got '" + fixed + "'", e);
    }
  }

  /** A generator seeded with this seed. */
  public SplittableRandom random() {
    return new SplittableRandom(value);
  }

  /** A test body that may throw. */
  @FunctionalInterface
  public interface Body {
    void run() throws Exception;
  }

  /**
   * Runs {@code body}; an assertion or exception it throws comes back as an {@link AssertionError}
   * whose message starts with this seed (the original is its cause).
   */
  public void check(Body body) {
    try {
      body.run();
    } catch (AssertionError | Exception e) {
      throw new AssertionError(this + ": " + e.getMessage(), e);
    }
  }

  /** {@code seed N (replay with -Dmoeyard.test.seed=N)}. */
  @Override
  public String toString() {
    return "seed " + value + " (replay with -D" + PROPERTY + "=" + value + ")";
  }
}
