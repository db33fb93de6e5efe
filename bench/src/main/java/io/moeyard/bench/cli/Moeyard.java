package io.moeyard.bench.cli;

import io.moeyard.engine.rendezvous.RendezvousException;
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
      LaunchCommand.class,
      RendezvousCheckCommand.class,
      LayerExampleCommand.class,
      CommandLine.HelpCommand.class
    })
public final class Moeyard implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  /**
   * A rank started by {@code moeyard launch} leaves when its launcher is gone, even if the launcher
   * was killed with -9 and could not stop it: a rank must never outlive its world.
   */
  private static void exitWithLauncher() {
    String pid = System.getenv(RankProcesses.LAUNCHER_PID_ENV);
    if (pid == null) return;
    try {
      ProcessHandle.of(Long.parseLong(pid)).ifPresentOrElse(
          h -> h.onExit().thenRun(() -> Runtime.getRuntime().halt(137)),
          () -> Runtime.getRuntime().halt(137));
    } catch (NumberFormatException ignored) {
      // Not set by a launcher; nothing to watch.
    }
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
    // A world that cannot form is bad input too (environment, port, disagreeing ranks). A world
    // that fails while it runs (a rank died or went silent) is no fault of this process's code: its
    // message names the rank and the cause, and a stack trace of where this rank waited says nothing.
    cl.setExecutionExceptionHandler((ex, c, parsed) -> {
      if (!(ex instanceof io.moeyard.engine.CollectiveException)) throw ex; // RendezvousException is one
      c.getErr().println("moeyard " + c.getCommandName() + ": " + ex.getMessage());
      return ex instanceof RendezvousException ? 2 : 1;
    });
    return cl;
  }

  public static void main(String[] args) {
    exitWithLauncher();
    System.exit(commandLine().execute(args));
  }
}
