package io.moeyard.cuda;

/**
 * Releases that must all be attempted even after one fails (a sticky CUDA error makes all of them
 * fail): the first failure is kept, the others ride along as suppressed.
 */
final class Release {
  private Release() {}

  /** {@code e} kept: the first failure, or suppressed on it. */
  static RuntimeException keep(RuntimeException first, RuntimeException e) {
    if (first == null) return e;
    first.addSuppressed(e);
    return first;
  }

  static RuntimeException attempt(RuntimeException first, Runnable release) {
    try {
      release.run();
      return first;
    } catch (RuntimeException e) {
      if (first == null) return e;
      first.addSuppressed(e);
      return first;
    }
  }
}
