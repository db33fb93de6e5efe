package io.moeyard.bench.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code moeyard} command: the entry point the {@code ./moeyard} launcher runs. */
@Command(
    name = "moeyard",
    mixinStandardHelpOptions = true,
    version = "moeyard 0.1.0-SNAPSHOT",
    description = "Fused MoE dispatch/combine benchmarks, layout inspection and expert placement.",
    subcommands = {BenchCommand.class, SelftestCommand.class, LayoutCommand.class, JmhCommand.class, CommandLine.HelpCommand.class})
public final class Moeyard implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  /** The command tree; JMH's options pass through {@code jmh} unparsed, in their order. */
  public static CommandLine commandLine() {
    CommandLine cl = new CommandLine(new Moeyard());
    cl.getSubcommands().get("jmh").setUnmatchedOptionsArePositionalParams(true);
    return cl;
  }

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }
}
