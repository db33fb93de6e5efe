package io.moeyard.placement.cli;

import io.moeyard.placement.format.PlacementWriter;
import io.moeyard.engine.ModelPreset;
import io.moeyard.placement.trace.NpyWriter;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.SyntheticTrace;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moeyard trace synth}. */
@Command(
    name = "synth",
    mixinStandardHelpOptions = true,
    description =
        "Write a synthetic per-token routing trace [tokens, layers, topk] as .npy: Zipf-skewed expert"
            + " popularity per layer and tunable cross-layer affinity. Presets: deepseek-v3, qwen3-30b-a3b,"
            + " qwen3-235b-a22b, mixtral-8x7b, gpt-oss-120b, kimi-k2, olmoe, esft-lite; explicit --layers,"
            + " --experts, --topk override the preset.")
public final class TraceSynthCommand implements Callable<Integer> {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(names = "--preset", paramLabel = "NAME", description = "Model shape to copy (see above).")
  String preset;

  @Option(names = "--layers", paramLabel = "L", description = "MoE layers.")
  Integer layers;

  @Option(names = "--experts", paramLabel = "E", description = "Routed experts per layer.")
  Integer experts;

  @Option(names = "--topk", paramLabel = "K", description = "Experts per token.")
  Integer topk;

  @Option(names = "--tokens", paramLabel = "N", defaultValue = "8192", description = "Tokens (default ${DEFAULT-VALUE}).")
  int tokens;

  @Option(names = "--skew", paramLabel = "S", defaultValue = "0.4",
      description = "Zipf exponent of expert popularity; 0 = uniform (default ${DEFAULT-VALUE}).")
  double skew;

  @Option(names = "--affinity", paramLabel = "A", defaultValue = "0.5",
      description = "Probability in [0, 1] that a token's expert follows the affinity model: its previous expert's preferred"
          + " successor (chains), or its domain's expert group (--domains) (default ${DEFAULT-VALUE}).")
  double affinity;

  @Option(names = "--domains", paramLabel = "D", defaultValue = "0",
      description = "0: chain affinity (expert j of a token at layer l ties to its expert j at l+1). D > 0: every token belongs"
          + " to one of D domains and each layer splits its experts into D groups, one per domain; a token's whole expert"
          + " set then ties across layers, as in real routing (default ${DEFAULT-VALUE}).")
  int domains;

  @Option(names = "--seed", paramLabel = "N", defaultValue = "1", description = "Random seed (default ${DEFAULT-VALUE}).")
  long seed;

  @Option(names = "--out", paramLabel = "FILE.npy", required = true, description = "Output file (written atomically).")
  Path out;

  @Override
  public Integer call() throws Exception {
    var o = spec.commandLine().getOut();
    return BadInput.guard("moeyard trace synth", spec.commandLine().getErr(), () -> {
      ModelPreset p = preset == null ? null : ModelPreset.byId(preset);
      Integer l = layers != null ? layers : p != null ? Integer.valueOf(p.layers) : null;
      Integer e = experts != null ? experts : p != null ? Integer.valueOf(p.experts) : null;
      Integer k = topk != null ? topk : p != null ? Integer.valueOf(p.topk) : null;
      if (l == null || e == null || k == null) throw new BadInput("give --preset NAME or all of --layers, --experts, --topk");
      if (domains < 0 || domains > e) throw new BadInput("--domains must be in [0, experts = " + e + "], got " + domains);
      var specs = new SyntheticTrace.Spec(l, e, k, tokens, skew, affinity, seed, domains);
      RoutingTrace t = SyntheticTrace.generate(specs);
      PlacementWriter.writeAtomically(out, os -> NpyWriter.write(os, new int[] {t.tokens(), t.layers(), t.topk()}, t.ids()));
      o.printf(Locale.ROOT, "wrote %s: [%d tokens, %d layers, top-%d] over %d experts, skew %.2f, affinity %.2f (%s), seed %d%n",
          out, t.tokens(), t.layers(), t.topk(), t.experts(), skew, affinity,
          domains == 0 ? "chains" : domains + " domains", seed);
      o.flush();
      return 0;
    });
  }
}
