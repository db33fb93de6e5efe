package io.moeyard.engine.rendezvous;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import java.util.List;

/**
 * The process world could not form or lost a rank: bad environment, a port in use, an
 * unreachable store, ranks that disagree, or ranks that did not arrive in time
 * ({@link #missingRanks()} names them). Command lines map it to exit code 2.
 */
public final class RendezvousException extends CollectiveException {
  private final List<Integer> missingRanks;

  public RendezvousException(String message) {
    this(message, List.of(), null);
  }

  public RendezvousException(String message, Throwable cause) {
    this(message, List.of(), cause);
  }

  public RendezvousException(String message, List<Integer> missingRanks, Throwable cause) {
    super(message, cause);
    this.missingRanks = List.copyOf(missingRanks);
  }

  /** The ranks that never arrived or left; empty when the failure is not about absence. */
  public List<Integer> missingRanks() {
    return missingRanks;
  }

  /**
   * This failure as a transport's collectives report it, with {@code message}: a
   * {@link CollectiveTimeoutException} naming the missing ranks when it names any, else a plain
   * {@link CollectiveException}; caused by this.
   */
  public CollectiveException asCollective(String message) {
    if (missingRanks.isEmpty()) return new CollectiveException(message, this);
    CollectiveTimeoutException t = new CollectiveTimeoutException(message, missingRanks);
    t.initCause(this);
    return t;
  }
}
