package io.moeyard.placement.format;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** The placement files engines read; the ids are the {@code --format} values. */
public enum PlacementFormat {
  /** SGLang {@code --init-expert-location}: {@code {"physical_to_logical_map": [L][P]}}. */
  SGLANG("sglang"),
  /** EPLB's return values as JSON: {@code phy2log}, {@code log2phy} (-1 padded), {@code logcnt}. */
  EPLB("eplb"),
  /** vllm-ascend {@code expert_map_path}: per layer, per device, the experts it holds. */
  VLLM_ASCEND("vllm-ascend");

  public final String id;

  PlacementFormat(String id) {
    this.id = id;
  }

  public static PlacementFormat byId(String id) {
    String k = id.toLowerCase(Locale.ROOT);
    for (PlacementFormat f : values()) if (f.id.equals(k)) return f;
    throw new IllegalArgumentException("unknown format '" + id + "'; known: " + ids());
  }

  public static String ids() {
    return Arrays.stream(values()).map(f -> f.id).collect(Collectors.joining(", "));
  }

  @Override
  public String toString() {
    return id;
  }
}
