/**
 * The {@code moeyard} command line (picocli). Commands are thin: they parse, validate (exit code 2
 * with one line naming the bad value), call into {@code bench.run} or the library, and print.
 * Output files are written to a temporary file and moved into place, so a failed run never
 * leaves a partial file behind.
 */
package io.moeyard.bench.cli;
