package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.testkit.TestSeed;
import java.math.BigDecimal;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class NumericsTest {
  /** Round-to-nearest-even to bf16 by exact arithmetic: pick the nearer neighbour, ties to even mantissa. */
  static short bf16Reference(float f) {
    int bits = Float.floatToRawIntBits(f);
    short down = (short) (bits >>> 16);
    short up = (short) ((bits >>> 16) + 1);
    BigDecimal x = new BigDecimal(f);
    float fd = Float.intBitsToFloat((down & 0xFFFF) << 16);
    float fu = Float.intBitsToFloat((up & 0xFFFF) << 16);
    BigDecimal bu = new BigDecimal(fu == fu && !Float.isInfinite(fu) ? fu : Math.signum(f) * 0x1p127f).multiply(
        BigDecimal.valueOf(Float.isInfinite(fu) ? 2 : 1)); // past the largest bf16 the next value is 2^128
    BigDecimal bd = new BigDecimal(fd);
    int c = x.subtract(bd).abs().compareTo(x.subtract(bu).abs());
    if (c < 0) return down;
    if (c > 0) return up;
    return (down & 1) == 0 ? down : up;
  }

  @Test
  void bf16RoundsToNearestEvenOnRandomFloats() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int i = 0; i < 200_000; i++) {
      float f = Float.intBitsToFloat(rnd.nextInt());
      if (Float.isNaN(f) || Float.isInfinite(f)) continue;
      assertEquals(bf16Reference(f), Numerics.floatToBf16(f), seed + " value " + f);
    }
  }

  @Test
  void bf16EdgeCases() {
    assertEquals((short) 0x3F80, Numerics.floatToBf16(1.0f));
    // exactly half-way between 1.0 and the next bf16 (1 + 2^-7): ties to even (1.0)
    assertEquals((short) 0x3F80, Numerics.floatToBf16(Float.intBitsToFloat(0x3F808000)));
    // half-way above an odd mantissa rounds up
    assertEquals((short) 0x3F82, Numerics.floatToBf16(Float.intBitsToFloat(0x3F818000)));
    assertEquals((short) 0x8000, Numerics.floatToBf16(-0.0f));
    assertEquals(0x7F80, Numerics.floatToBf16(Float.POSITIVE_INFINITY) & 0xFFFF);
    assertEquals(true, Float.isNaN(Numerics.bf16ToFloat(Numerics.floatToBf16(Float.NaN))));
    assertEquals(1.5f, Numerics.bf16ToFloat((short) 0x3FC0));
    // NaNs stay NaN whatever their payload: truncated, quiet bit set, sign kept (no carry into inf or sign)
    assertEquals((short) 0x7FC0, Numerics.floatToBf16(Float.intBitsToFloat(0x7F800001)));
    assertEquals((short) 0xFFFF, Numerics.floatToBf16(Float.intBitsToFloat(0xFFFFFFFF)));
    assertEquals((short) 0x7FFF, Numerics.floatToBf16(Float.intBitsToFloat(0x7FBFFFFF)));
    // the largest finite values round to infinity only past the half-way point
    assertEquals((short) 0x7F80, Numerics.floatToBf16(Float.MAX_VALUE));
    assertEquals((short) 0xFF80, Numerics.floatToBf16(-Float.MAX_VALUE));
  }

  @Test
  void fp8E4m3DecodesKnownValues() {
    assertEquals(0f, Numerics.fp8E4m3ToFloat((byte) 0x00));
    assertEquals(1f, Numerics.fp8E4m3ToFloat((byte) 0x38));
    assertEquals(448f, Numerics.fp8E4m3ToFloat((byte) 0x7E));
    assertEquals(-2f, Numerics.fp8E4m3ToFloat((byte) 0xC0));
    assertEquals(0x1p-9f, Numerics.fp8E4m3ToFloat((byte) 0x01)); // smallest subnormal
    assertEquals(true, Float.isNaN(Numerics.fp8E4m3ToFloat((byte) 0x7F)));
  }
}
