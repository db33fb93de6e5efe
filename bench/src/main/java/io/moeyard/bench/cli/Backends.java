package io.moeyard.bench.cli;

/** Which data-path backends this build can run, and why not when it cannot. */
final class Backends {
  private Backends() {}

  static String cudaUnavailableReason() {
    return "CUDA backend unavailable: this build has no cuda backend wired into the command yet";
  }
}
