package io.moeyard.bench.cli;

import io.moeyard.placement.cli.PlanCommand;
import io.moeyard.placement.cli.SpeculateCommand;
import io.moeyard.placement.cli.TraceCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code moeyard} command: the entry point the {@code ./moeyard} launcher runs. */
@Command(
    name = "moeyard",
    mixinStandardHelpOptions = true,
    version = "moeyard 0.1.0-SNAPSHOT",
    description = "Fused MoE dispatch/combine benchmarks, layout inspection and expert placement.",
    subcommands = {
      BenchCommand.class,
      SelftestCommand.class,
      LayoutCommand.class,
      PlanCommand.class,
      SpeculateCommand.class,
      TraceCommand.class,
      JmhCommand.class,
      CommandLine.HelpCommand.class
    })
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
    // Bad command lines are bad input like any other: one line naming the problem, exit code 2.
    cl.setParameterExceptionHandler((ex, args) -> {
      CommandLine c = ex.getCommandLine();
      c.getErr().println("moeyard " + c.getCommandName() + ": " + ex.getMessage());
      c.getErr().println("(see: " + c.getCommandSpec().qualifiedName() + " --help)");
      return 2;
    });
    return cl;
  }

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }
}
