package io.moeyard.bench.cli;

import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/** {@code moeyard jmh}: the JMH benchmarks of io.moeyard.bench.jmh, with JMH's own options. */
@Command(
    name = "jmh",
    description = {
      "Runs the JMH benchmarks (LayoutBenchmark, CopyKernelsBenchmark) with JMH's options.",
      "",
      "e.g. `moeyard jmh LayoutBenchmark -f 1 -wi 2 -i 3` or `moeyard jmh -h` for JMH's help."
    })
public final class JmhCommand implements Callable<Integer> {
  /** Everything after {@code jmh}, in order (see {@link Moeyard#commandLine()}: options are not parsed here). */
  @Parameters(arity = "0..*", paramLabel = "JMH_ARGS") List<String> args = new java.util.ArrayList<>();

  @Override
  public Integer call() throws Exception {
    org.openjdk.jmh.Main.main(args.toArray(String[]::new));
    return 0;
  }
}
