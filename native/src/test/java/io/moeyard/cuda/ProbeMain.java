package io.moeyard.cuda;

/** Prints the availability message; run in a fresh JVM by AvailabilityTest. */
public final class ProbeMain {
  private ProbeMain() {}

  public static void main(String[] args) {
    System.out.println(CudaBackend.availability().message());
  }
}
