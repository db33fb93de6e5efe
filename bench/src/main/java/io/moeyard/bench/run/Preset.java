package io.moeyard.bench.run;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Model shapes the field benchmarks with (REFERENCES.md). Tokens per rank default to the
 * throughput setting (4096); on the CPU backend expect a preset run to take minutes, and lower
 * {@code --tokens} for a quick look.
 */
public enum Preset {
  DEEPSEEK_V3("deepseek-v3", 7168, 256, 8),
  KIMI_K2("kimi-k2", 7168, 384, 8),
  QWEN3_235B_A22B("qwen3-235b-a22b", 4096, 128, 8),
  QWEN3_30B_A3B("qwen3-30b-a3b", 2048, 128, 8),
  MIXTRAL_8X7B("mixtral-8x7b", 4096, 8, 2),
  GPT_OSS_120B("gpt-oss-120b", 2880, 128, 4),
  OLMOE("olmoe-1b-7b", 2048, 64, 8);

  public final String cliName;
  public final int hidden;
  public final int experts;
  public final int topk;

  Preset(String cliName, int hidden, int experts, int topk) {
    this.cliName = cliName;
    this.hidden = hidden;
    this.experts = experts;
    this.topk = topk;
  }

  public static Preset parse(String s) {
    String want = s.toLowerCase(Locale.ROOT);
    for (Preset p : values()) if (p.cliName.equals(want)) return p;
    throw new IllegalArgumentException("unknown preset '" + s + "' (known: " + names() + ")");
  }

  public static String names() {
    return Arrays.stream(values()).map(p -> p.cliName).collect(Collectors.joining(", "));
  }
}
