package io.moeyard.placement.cli;

import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.TraceStats;
import io.moeyard.placement.trace.Traces;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code moeyard trace stats FILE}. */
@Command(
    name = "stats",
    mixinStandardHelpOptions = true,
    description = "Per layer: expert loads, imbalance (busiest expert / mean), top co-activations and transitions.")
public final class TraceStatsCommand implements Callable<Integer> {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Parameters(index = "0", paramLabel = "FILE", description = "Per-token .npy trace or {\"logical_count\": ...} JSON.")
  Path file;

  @Option(names = "--experts", paramLabel = "E", defaultValue = "0",
      description = "Logical experts per layer; default: largest id in the trace + 1.")
  int experts;

  @Option(names = "--top", paramLabel = "N", defaultValue = "3", description = "Pairs to list per layer (default ${DEFAULT-VALUE}).")
  int top;

  @Override
  public Integer call() throws Exception {
    var out = spec.commandLine().getOut();
    return BadInput.guard("moeyard trace stats", spec.commandLine().getErr(), () -> {
      if (top < 0) throw new BadInput("--top must be >= 0, got " + top);
      if (experts < 0) throw new BadInput("--experts must be positive, got " + experts);
      Trace t = Traces.load(file, experts);
      out.print(TraceStats.render(t, top));
      out.flush();
      return 0;
    });
  }
}
