/**
 * The {@code moeyard plan}, {@code moeyard speculate} and {@code moeyard trace} commands, registered by the bench module's
 * {@code moeyard} entry point.
 *
 * <p>Other tools drive these commands by name and flag, so flags are stable and input errors are
 * answered the same way everywhere: one line on stderr naming the problem, exit code 2, and no
 * output file (files are only written at the end, atomically). The report goes to stdout, progress
 * and notes to stderr, so a caller can capture the table.
 *
 * <p>The CP-SAT planner is reached through one bridge class, so that this module builds and is
 * useful without it; see {@code IlpPlannerBridge}.
 */
package io.moeyard.placement.cli;
