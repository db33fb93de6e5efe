package io.moeyard.engine;

/**
 * Scalar conversions between float and the 16-bit storage types, rounding to nearest even as
 * CUDA's {@code __float2bfloat16_rn} / {@code __float2half_rn} do, so every backend stores the
 * same bits for the same float.
 */
public final class Numerics {
  private Numerics() {}

  public static float bf16ToFloat(short bits) {
    return Float.intBitsToFloat((bits & 0xFFFF) << 16);
  }

  /**
   * Nearest-even rounding to bf16; NaN stays NaN (truncated payload, quiet bit set, sign kept).
   * Branch-free integer arithmetic, so that the JIT vectorises the loops that call it (combine
   * rounds every value it stores).
   */
  public static short floatToBf16(float f) {
    int bits = Float.floatToRawIntBits(f);
    int isNan = (0x7F800000 - (bits & 0x7FFFFFFF)) >>> 31; // 1 iff |bits| > +inf's bits
    int rounding = (0x7FFF + ((bits >>> 16) & 1)) & (isNan - 1); // no rounding carry for NaN
    return (short) (((bits + rounding) >>> 16) | (isNan << 6));
  }

  public static float fp16ToFloat(short bits) {
    return Float.float16ToFloat(bits);
  }

  public static short floatToFp16(float f) {
    return Float.floatToFloat16(f);
  }

  /** FP8 E4M3 (fn variant: no infinities, 0x7F/0xFF are NaN) to float. */
  public static float fp8E4m3ToFloat(byte b) {
    int v = b & 0xFF;
    int sign = (v >>> 7) != 0 ? -1 : 1;
    int exp = (v >>> 3) & 0xF;
    int man = v & 0x7;
    if (exp == 0xF && man == 0x7) return Float.NaN;
    if (exp == 0) return sign * (man / 8.0f) * 0x1p-6f;
    return sign * (1 + man / 8.0f) * (float) Math.scalb(1.0, exp - 7);
  }
}
