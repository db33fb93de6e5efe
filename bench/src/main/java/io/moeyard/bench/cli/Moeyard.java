package io.moeyard.bench.cli;

import io.moeyard.placement.cli.PlanCommand;
import io.moeyard.placement.cli.TraceCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code moeyard} command: the entry point the {@code ./moeyard} launcher runs. */
@Command(
    name = "moeyard",
    mixinStandardHelpOptions = true,
    version = "moeyard 0.1.0-SNAPSHOT",
    description = "Fused MoE dispatch/combine benchmarks, layout inspection and expert placement.",
    subcommands = {CommandLine.HelpCommand.class, PlanCommand.class, TraceCommand.class})
public final class Moeyard implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  public static void main(String[] args) {
    System.exit(new CommandLine(new Moeyard()).execute(args));
  }
}
