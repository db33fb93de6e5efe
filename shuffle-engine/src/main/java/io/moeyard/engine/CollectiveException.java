package io.moeyard.engine;

/**
 * A collective call failed. Thrown on every rank of the call with the same message, before any
 * user buffer was modified when the cause is bad input.
 */
public class CollectiveException extends RuntimeException {
  public CollectiveException(String message) {
    super(message);
  }

  public CollectiveException(String message, Throwable cause) {
    super(message, cause);
  }

  /** What a transport tells the world when {@code rank} aborts with {@code cause}: {@code "rank r aborted: "} and {@link #describe}. */
  public static String abortReason(int rank, Throwable cause) {
    return "rank " + rank + " aborted: " + describe(cause);
  }

  /**
   * An abort's cause in words: its class and message, but only the message of a collective's own
   * failure, which already says what failed where (no "CollectiveException: " in the middle of a
   * chain of ranks).
   */
  public static String describe(Throwable cause) {
    return cause instanceof CollectiveException ? cause.getMessage() : String.valueOf(cause);
  }
}
