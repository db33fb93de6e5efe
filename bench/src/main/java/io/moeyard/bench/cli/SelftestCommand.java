package io.moeyard.bench.cli;

import io.moeyard.bench.run.SelfTest;
import io.moeyard.cuda.CudaBackend;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moeyard selftest}: random configurations, one backend vs the CPU fused path, bit for bit. */
@Command(
    name = "selftest",
    mixinStandardHelpOptions = true,
    description = {
      "Runs many random dispatch/combine configurations (1..8 ranks and nodes, 1 in 8 cases up to 16, 1..32 slots per rank,",
      "replicas, top-k 1..8 (up to 16 in the wide cases), bf16/fp16/fp32/fp8+scales, 0..N tokens per rank incl. empty ranks, -1 entries, skewed routing)",
      "and compares every output of the chosen backend bit for bit with the CPU fused path",
      "(cpu: fused, through the node relay on several nodes, vs the naive reference, and single-hop fused and unfused vs it;",
      "cuda: fused and unfused CUDA vs the CPU fused path).",
      "Prints one line per failing case with its seed, then a summary. Exit 0: all passed; 1: a case failed;",
      "2: bad options; 3: the backend cannot run here."
    })
public final class SelftestCommand implements Callable<Integer> {
  @Option(names = "--backend", description = "cpu (default) or cuda", defaultValue = "cpu")
  String backend;

  @Option(names = "--cases", description = "random cases; default ${DEFAULT-VALUE}", defaultValue = "100")
  int cases;

  @Option(names = "--seed", description = "seed of the case seeds; default ${DEFAULT-VALUE}", defaultValue = "1")
  long seed;

  @Option(names = "--max-tokens", description = "tokens per rank are drawn from 0..N; default ${DEFAULT-VALUE}", defaultValue = "64")
  int maxTokens;

  @Option(names = "--case-seed", description = "run only the case with this seed (as printed by a failure)")
  Long caseSeed;

  @Override
  public Integer call() {
    String b = backend.toLowerCase(Locale.ROOT);
    if (!b.equals("cpu") && !b.equals("cuda")) {
      System.err.println("moeyard selftest: unknown --backend '" + backend + "' (cpu or cuda)");
      return 2;
    }
    if (cases < 1 || maxTokens < 0) {
      System.err.println("moeyard selftest: --cases must be >= 1 and --max-tokens >= 0");
      return 2;
    }
    if (b.equals("cuda") && !CudaBackend.availability().available()) {
      System.err.println("moeyard selftest: " + CudaBackend.availability().message());
      return 3;
    }
    return SelfTest.run(b, cases, seed, maxTokens, caseSeed, System.out);
  }
}
