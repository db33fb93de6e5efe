package io.moeyard.combine.internal;

import io.moeyard.engine.Numerics;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * SIMD versions of {@link RowMath}'s BF16 and FP32 loops (the incubating Vector API). Lane for
 * lane the same IEEE operations as the scalar loops (a multiply, then an add; never an FMA) and
 * the same integer rounding to BF16, so results are identical bit for bit; only the speed
 * differs (about 10x on AVX-512 for BF16, where the scalar loop is bound by its conversions).
 *
 * <p>Loaded only when the {@code jdk.incubator.vector} module is in the boot layer (see
 * {@link RowMath}); without {@code --add-modules jdk.incubator.vector} this class is never touched.
 */
final class VectorRowMath {
  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
  /** Half as wide as F: as many shorts as F has floats. */
  private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
  private static final int N = F.length();
  private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
  private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED;
  private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED;

  private VectorRowMath() {}

  private static FloatVector loadBf16(MemorySegment s, long at) {
    ShortVector sv = ShortVector.fromMemorySegment(S, s, at, LE);
    IntVector iv = (IntVector) sv.convertShape(VectorOperators.ZERO_EXTEND_S2I, I, 0);
    return iv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
  }

  /**
   * The vector form of {@link Numerics#floatToBf16}, as the 16 result bits in the low half of
   * each lane: round to nearest even by integer addition, and NaNs (rare; a branch on the whole
   * vector is cheaper than blending every time) keep their top bits with the quiet bit set.
   */
  private static IntVector bf16Bits(FloatVector v) {
    IntVector bits = v.reinterpretAsInts();
    IntVector high = bits.lanewise(VectorOperators.LSHR, 16);
    IntVector r = bits.add(high.and(1).add(0x7FFF)).lanewise(VectorOperators.LSHR, 16);
    VectorMask<Float> nan = v.test(VectorOperators.IS_NAN);
    return nan.anyTrue() ? r.blend(high.or(0x40), nan.cast(I)) : r;
  }

  private static void storeBf16(FloatVector v, MemorySegment s, long at) {
    ShortVector out = (ShortVector) bf16Bits(v).convertShape(VectorOperators.I2S, S, 0);
    out.intoMemorySegment(s, at, LE);
  }

  static void addWeightedBf16(float[] acc, MemorySegment s, long at, int h, float w) {
    FloatVector wv = FloatVector.broadcast(F, w);
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) {
      FloatVector y = loadBf16(s, at + 2L * c);
      FloatVector.fromArray(F, acc, c).add(y.mul(wv)).intoArray(acc, c);
    }
    for (; c < h; c++) acc[c] = acc[c] + w * Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c));
  }

  /** {@code acc[c] = 0 + w * y[c]}: the first row of a sum, without clearing acc first (same bits: 0 + -0 = +0). */
  static void setWeightedBf16(float[] acc, MemorySegment s, long at, int h, float w) {
    FloatVector wv = FloatVector.broadcast(F, w);
    FloatVector zero = FloatVector.zero(F);
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) zero.add(loadBf16(s, at + 2L * c).mul(wv)).intoArray(acc, c);
    for (; c < h; c++) acc[c] = 0f + w * Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c));
  }

  /** {@code acc[c] = 0 + y[c]}. */
  static void setBf16(float[] acc, MemorySegment s, long at, int h) {
    FloatVector zero = FloatVector.zero(F);
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) zero.add(loadBf16(s, at + 2L * c)).intoArray(acc, c);
    for (; c < h; c++) acc[c] = 0f + Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c));
  }

  static void addWeightedFp32(float[] acc, MemorySegment s, long at, int h, float w) {
    FloatVector wv = FloatVector.broadcast(F, w);
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) {
      FloatVector y = FloatVector.fromMemorySegment(F, s, at + 4L * c, LE);
      FloatVector.fromArray(F, acc, c).add(y.mul(wv)).intoArray(acc, c);
    }
    for (; c < h; c++) acc[c] = acc[c] + w * s.get(FLOAT, at + 4L * c);
  }

  static void addBf16(float[] acc, MemorySegment s, long at, int h) {
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) {
      FloatVector.fromArray(F, acc, c).add(loadBf16(s, at + 2L * c)).intoArray(acc, c);
    }
    for (; c < h; c++) acc[c] = acc[c] + Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c));
  }

  static void addFp32(float[] acc, MemorySegment s, long at, int h) {
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) {
      FloatVector.fromArray(F, acc, c).add(FloatVector.fromMemorySegment(F, s, at + 4L * c, LE)).intoArray(acc, c);
    }
    for (; c < h; c++) acc[c] = acc[c] + s.get(FLOAT, at + 4L * c);
  }

  static void storeBf16(float[] acc, MemorySegment s, long at, int h) {
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) storeBf16(FloatVector.fromArray(F, acc, c), s, at + 2L * c);
    for (; c < h; c++) s.set(SHORT, at + 2L * c, Numerics.floatToBf16(acc[c]));
  }

  /** {@code acc += float(bf16(partial))}: a partial added as if it had been stored in BF16. */
  static void addRoundedBf16(float[] acc, float[] partial, int h) {
    int c = 0;
    for (int end = F.loopBound(h); c < end; c += N) {
      FloatVector rounded = bf16Bits(FloatVector.fromArray(F, partial, c)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
      FloatVector.fromArray(F, acc, c).add(rounded).intoArray(acc, c);
    }
    for (; c < h; c++) acc[c] = acc[c] + Numerics.bf16ToFloat(Numerics.floatToBf16(partial[c]));
  }

  /**
   * {@code d = round((((0 + w[0] * y_0) + w[1] * y_1) + ...) + w[n-1] * y_{n-1})} over the BF16 rows
   * at byte offsets {@code off[0..n)} of {@code s} ({@code w == null}: the unweighted sum {@code
   * ((0 + y_0) + y_1) + ...}), stored as BF16 at {@code dAt} of {@code d}. The sum of two vectors'
   * worth of channels stays in registers while the rows stream in, instead of going through an
   * accumulator array once per row; per channel the operations and their order are those of
   * {@link #setWeightedBf16} then {@link #addWeightedBf16} then {@link #storeBf16}, hence the
   * same bits. {@code n >= 1}.
   */
  static void sumRowsStoreBf16(MemorySegment s, long[] off, float[] w, int n, int h, MemorySegment d, long dAt) {
    FloatVector zero = FloatVector.zero(F);
    int c = 0;
    for (int end = h - 2 * N; c <= end; c += 2 * N) {
      FloatVector a0 = zero, a1 = zero;
      for (int i = 0; i < n; i++) {
        FloatVector y0 = loadBf16(s, off[i] + 2L * c);
        FloatVector y1 = loadBf16(s, off[i] + 2L * (c + N));
        if (w != null) {
          FloatVector wv = FloatVector.broadcast(F, w[i]);
          y0 = y0.mul(wv);
          y1 = y1.mul(wv);
        }
        a0 = a0.add(y0);
        a1 = a1.add(y1);
      }
      storeBf16(a0, d, dAt + 2L * c);
      storeBf16(a1, d, dAt + 2L * (c + N));
    }
    for (; c < h; c++) {
      float a = 0f;
      for (int i = 0; i < n; i++) {
        float y = Numerics.bf16ToFloat(s.get(SHORT, off[i] + 2L * c));
        a = a + (w != null ? w[i] * y : y);
      }
      d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(a));
    }
  }
  /**
   * The unfused path's two-level sum in one pass: rows grouped by expert rank ({@code groupEnd[g]}
   * ends group g in {@code off} and {@code w}); each group's weighted sum is rounded to BF16 and
   * back (as the fused path stores its partial), the groups are summed in order, the total is
   * rounded and stored. Per channel the same operations, in the same order, as clearing, then
   * per group {@link #addWeightedBf16} into a cleared partial and {@link #addRoundedBf16}, then
   * {@link #storeBf16}.
   */
  static void sumGroupsStoreBf16(MemorySegment s, long[] off, float[] w, int[] groupEnd, int groups, int h,
      MemorySegment d, long dAt) {
    FloatVector zero = FloatVector.zero(F);
    int c = 0;
    for (int end = h - 2 * N; c <= end; c += 2 * N) {
      FloatVector a0 = zero, a1 = zero;
      int i = 0;
      for (int g = 0; g < groups; g++) {
        FloatVector p0 = zero, p1 = zero;
        for (; i < groupEnd[g]; i++) {
          FloatVector wv = FloatVector.broadcast(F, w[i]);
          p0 = p0.add(loadBf16(s, off[i] + 2L * c).mul(wv));
          p1 = p1.add(loadBf16(s, off[i] + 2L * (c + N)).mul(wv));
        }
        a0 = a0.add(bf16Bits(p0).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats());
        a1 = a1.add(bf16Bits(p1).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats());
      }
      storeBf16(a0, d, dAt + 2L * c);
      storeBf16(a1, d, dAt + 2L * (c + N));
    }
    for (; c < h; c++) {
      float a = 0f;
      int i = 0;
      for (int g = 0; g < groups; g++) {
        float p = 0f;
        for (; i < groupEnd[g]; i++) p = p + w[i] * Numerics.bf16ToFloat(s.get(SHORT, off[i] + 2L * c));
        a = a + Numerics.bf16ToFloat(Numerics.floatToBf16(p));
      }
      d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(a));
    }
  }
}
