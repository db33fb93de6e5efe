package io.moeyard.engine;

import java.util.List;

/** Some ranks did not reach a collective in time; {@link #missingRanks()} names them. */
public final class CollectiveTimeoutException extends CollectiveException {
  private final List<Integer> missingRanks;

  public CollectiveTimeoutException(String message, List<Integer> missingRanks) {
    super(message);
    this.missingRanks = List.copyOf(missingRanks);
  }

  public List<Integer> missingRanks() {
    return missingRanks;
  }
}
