package io.moeyard.placement.trace;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * MoE shapes of public models (REFERENCES.md), so that synthetic traces and byte estimates match a
 * model a user actually runs without them looking the numbers up.
 */
public enum ModelPreset {
  DEEPSEEK_V3("deepseek-v3", 58, 256, 8, 7168, 8),
  QWEN3_30B_A3B("qwen3-30b-a3b", 48, 128, 8, 2048, 1),
  QWEN3_235B_A22B("qwen3-235b-a22b", 94, 128, 8, 4096, 1),
  MIXTRAL_8X7B("mixtral-8x7b", 32, 8, 2, 4096, 1),
  GPT_OSS_120B("gpt-oss-120b", 36, 128, 4, 2880, 1),
  KIMI_K2("kimi-k2", 60, 384, 8, 7168, 1),
  OLMOE("olmoe", 16, 64, 8, 2048, 1),
  /** DeepSeek-V2-Lite / ESFT-vanilla-lite, the model the ESFT traces in shared/data come from. */
  ESFT_LITE("esft-lite", 26, 64, 6, 2048, 1);

  public final String id;
  public final int layers;
  public final int experts;
  public final int topk;
  public final int hidden;
  /** Expert groups of group-limited routing (DeepSeek-V3's 8); 1 where the model has none. */
  public final int groups;

  ModelPreset(String id, int layers, int experts, int topk, int hidden, int groups) {
    this.id = id;
    this.layers = layers;
    this.experts = experts;
    this.topk = topk;
    this.hidden = hidden;
    this.groups = groups;
  }

  public static ModelPreset byId(String id) {
    String k = id.toLowerCase(Locale.ROOT);
    for (ModelPreset p : values()) if (p.id.equals(k)) return p;
    throw new IllegalArgumentException("unknown preset '" + id + "'; known: " + ids());
  }

  public static String ids() {
    return Arrays.stream(values()).map(p -> p.id).collect(Collectors.joining(", "));
  }
}
