package io.moeyard.placement.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code moeyard trace}: make and inspect routing traces. */
@Command(
    name = "trace",
    mixinStandardHelpOptions = true,
    description = "Make synthetic routing traces and inspect traces.",
    subcommands = {TraceSynthCommand.class, TraceStatsCommand.class})
public final class TraceCommand implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }
}
