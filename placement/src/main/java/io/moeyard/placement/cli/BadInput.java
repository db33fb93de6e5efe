package io.moeyard.placement.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.util.concurrent.Callable;

/**
 * How the commands fail on input they cannot use: one line naming the problem and exit code 2
 * (picocli's usage-error code, so scripts see one code for "your input is wrong"), never a stack
 * trace, which would read as a bug in moeyard.
 */
final class BadInput extends RuntimeException {
  static final int EXIT = 2;

  BadInput(String message) {
    super(message);
  }

  /** Runs {@code body}, turning input errors into the one-line message and exit code 2. */
  static int guard(String command, PrintWriter err, Callable<Integer> body) throws Exception {
    try {
      return body.call();
    } catch (IllegalArgumentException | BadInput e) {
      // TraceFormatException is an IllegalArgumentException; so are the model records' checks.
      err.println(command + ": " + e.getMessage());
    } catch (NoSuchFileException e) {
      err.println(command + ": " + e.getFile() + ": " + (e.getReason() != null ? e.getReason() : "no such file"));
    } catch (AccessDeniedException e) {
      err.println(command + ": " + e.getFile() + ": permission denied");
    } catch (IOException e) {
      err.println(command + ": " + e.getMessage());
    }
    err.flush();
    return EXIT;
  }
}
