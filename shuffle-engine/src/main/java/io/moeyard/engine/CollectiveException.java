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
}
