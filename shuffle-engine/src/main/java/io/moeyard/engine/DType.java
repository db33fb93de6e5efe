package io.moeyard.engine;

import java.util.Locale;

/**
 * Payload element types. Dispatch moves all four bit for bit; combine computes in float and
 * stores BF16, FP16 or FP32 (FP8 is a dispatch-only format, as in DeepEP).
 */
public enum DType {
  BF16(2),
  FP16(2),
  FP32(4),
  /** FP8 E4M3, with one float scale per {@link #FP8_SCALE_BLOCK} channels carried beside each row. */
  FP8_E4M3(1);

  /** Channels that share one FP8 scale (DeepEP's per-128-channel scaling). */
  public static final int FP8_SCALE_BLOCK = 128;

  private final int bytes;

  DType(int bytes) {
    this.bytes = bytes;
  }

  public int bytes() {
    return bytes;
  }

  public boolean hasScales() {
    return this == FP8_E4M3;
  }

  /** Types combine can produce (it accumulates in float and rounds once per stored value). */
  public boolean combinable() {
    return this != FP8_E4M3;
  }

  /** Parses the command-line spelling: bf16, fp16, fp32, fp8. */
  public static DType parse(String s) {
    return switch (s.toLowerCase(Locale.ROOT)) {
      case "bf16", "bfloat16" -> BF16;
      case "fp16", "f16", "half" -> FP16;
      case "fp32", "f32", "float" -> FP32;
      case "fp8", "fp8_e4m3", "e4m3" -> FP8_E4M3;
      default -> throw new IllegalArgumentException("unknown dtype '" + s + "' (expected bf16, fp16, fp32 or fp8)");
    };
  }

  public String cliName() {
    return this == FP8_E4M3 ? "fp8" : name().toLowerCase(Locale.ROOT);
  }
}
