package io.moeyard.combine;

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
   * {@code d = round(acc + w * y)}, or {@code round(0 + w * y)} when {@code acc} is null: the last
   * row of a weighted sum stored straight to its destination, without writing acc back (one pass
   * instead of add-then-store; the same operations lane for lane, hence the same bits).
   */
  static void addWeightedStoreBf16(float[] acc, MemorySegment s, long at, int h, float w, MemorySegment d, long dAt) {
    FloatVector wv = FloatVector.broadcast(F, w);
    int c = 0;
    int end = F.loopBound(h);
    if (acc == null) {
      FloatVector zero = FloatVector.zero(F);
      for (; c < end; c += N) storeBf16(zero.add(loadBf16(s, at + 2L * c).mul(wv)), d, dAt + 2L * c);
      for (; c < h; c++) d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(0f + w * Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c))));
    } else {
      for (; c < end; c += N) storeBf16(FloatVector.fromArray(F, acc, c).add(loadBf16(s, at + 2L * c).mul(wv)), d, dAt + 2L * c);
      for (; c < h; c++) d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(acc[c] + w * Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c))));
    }
  }

  /** {@code d = round(acc + y)}, or {@code round(0 + y)} when {@code acc} is null. */
  static void addStoreBf16(float[] acc, MemorySegment s, long at, int h, MemorySegment d, long dAt) {
    int c = 0;
    int end = F.loopBound(h);
    if (acc == null) {
      FloatVector zero = FloatVector.zero(F);
      for (; c < end; c += N) storeBf16(zero.add(loadBf16(s, at + 2L * c)), d, dAt + 2L * c);
      for (; c < h; c++) d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(0f + Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c))));
    } else {
      for (; c < end; c += N) storeBf16(FloatVector.fromArray(F, acc, c).add(loadBf16(s, at + 2L * c)), d, dAt + 2L * c);
      for (; c < h; c++) d.set(SHORT, dAt + 2L * c, Numerics.floatToBf16(acc[c] + Numerics.bf16ToFloat(s.get(SHORT, at + 2L * c))));
    }
  }
}
