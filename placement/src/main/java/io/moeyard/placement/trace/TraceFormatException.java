package io.moeyard.placement.trace;

/**
 * A trace file that cannot be used as given: unreadable header, wrong dtype or rank, truncated
 * data, expert ids out of range. The message names the file and the offending value, because the
 * user fixes their export, not our code.
 */
public final class TraceFormatException extends IllegalArgumentException {
  public TraceFormatException(String message) {
    super(message);
  }
}
