package io.moeyard.placement.cli;

import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.trace.LocalityHeadroom;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.TraceStats;
import io.moeyard.placement.trace.Traces;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
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

  @Option(names = "--headroom", paramLabel = "G", split = ",",
      description = "Also search how local transitions can get split into G groups (GPUs or nodes; repeatable or"
          + " comma-separated) with no load balance and no replicas: a yardstick for any placement of this trace.")
  List<Integer> headroom = new ArrayList<>();

  @Option(names = "--headroom-seconds", paramLabel = "S", defaultValue = "30",
      description = "Time for each --headroom search; the best split found by then is reported (default ${DEFAULT-VALUE}).")
  double headroomSeconds;

  @Override
  public Integer call() throws Exception {
    var out = spec.commandLine().getOut();
    return BadInput.guard("moeyard trace stats", spec.commandLine().getErr(), () -> {
      if (top < 0) throw new BadInput("--top must be >= 0, got " + top);
      if (experts < 0) throw new BadInput("--experts must be positive, got " + experts);
      Trace t = Traces.load(file, experts);
      for (int g : headroom) {
        if (g < 1 || g > t.experts()) throw new BadInput("--headroom " + g + " is not in [1, experts = " + t.experts() + "]");
      }
      if (!headroom.isEmpty() && !(t instanceof RoutingTrace)) {
        throw new BadInput("--headroom needs a per-token .npy trace: " + t.name() + " holds loads only");
      }
      if (!(headroomSeconds > 0)) throw new BadInput("--headroom-seconds must be > 0, got " + headroomSeconds);
      out.print(TraceStats.render(t, top));
      if (t instanceof RoutingTrace rt && rt.layers() > 1) {
        PairCounts[] tr = rt.transitions();
        out.printf(Locale.ROOT, "top-5 successor share (transitions to an expert's 5 most frequent successors): %.3f%n",
            LocalityHeadroom.topSuccessorShare(tr, rt.experts(), 5));
        for (int g : headroom) {
          long deadline = System.nanoTime() + (long) (headroomSeconds * 1e9);
          double cross = LocalityHeadroom.crossFraction(tr, rt.experts(), g, 4, 1, deadline);
          out.printf(Locale.ROOT, "headroom, %d groups: %.1f%% of transitions cross groups (random split: %.1f%%)%n",
              g, 100 * cross, 100.0 * (g - 1) / g);
          out.flush();
        }
      }
      out.flush();
      return 0;
    });
  }
}
