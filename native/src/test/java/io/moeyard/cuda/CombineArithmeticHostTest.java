package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.DType;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The combine arithmetic of arith.cuh (the functions the combine kernels call), run on the host,
 * against the contract written in plain Java: per token-rank pair acc = acc + w * float(y) in
 * float without FMA, the partial rounded to the dtype (nearest even), partials summed in order in
 * float, rounded once more. Bit for bit, except that two NaNs count as equal: NaN payloads are
 * not part of the contract (GPU arithmetic returns the canonical NaN whatever the operands, x86
 * propagates an operand's payload, and Java's own FP16 NaN bits differ between interpreted and
 * compiled code). Infinities, signed zeros and NaN inputs are exercised (mode 4).
 */
class CombineArithmeticHostTest {

  @BeforeEach
  void library() {
    NativeTestSupport.requireLibrary();
  }

  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16", "FP16", "FP32"})
  void tokenCombineMatchesContract(DType dt) {
    Random rnd = new Random(NativeTestSupport.seed("tokenCombineMatchesContract " + dt));
    for (int iter = 0; iter < 400; iter++) {
      int h = 1 + rnd.nextInt(70);
      int nGroups = rnd.nextInt(9); // 0 = a token routed nowhere: output 0
      int[] groups = new int[nGroups];
      int rows = 0;
      for (int g = 0; g < nGroups; g++) {
        groups[g] = 1 + rnd.nextInt(4);
        rows += groups[g];
      }
      int mode = rnd.nextInt(5);
      float[] yf = new float[rows * h];
      for (int i = 0; i < yf.length; i++) {
        yf[i] = switch (mode) {
          case 0 -> rnd.nextFloat() * 4f - 2f;
          case 1 -> (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
          case 2 -> dt == DType.FP16 ? (rnd.nextFloat() * 2f - 1f) * 65504f // overflow to inf
              : (float) ((rnd.nextFloat() * 2 - 1) * Math.pow(2, rnd.nextInt(250) - 125));
          case 3 -> (rnd.nextInt(3) - 1) * (1f + rnd.nextInt(4) / 256f); // ties for rounding
          default -> switch (rnd.nextInt(6)) { // specials: NaN payloads, infinities, signed zeros
            case 0 -> Float.intBitsToFloat((rnd.nextBoolean() ? 0x7F800000 : 0xFF800000) | (1 + rnd.nextInt(0x7FFFFF)));
            case 1 -> rnd.nextBoolean() ? Float.POSITIVE_INFINITY : Float.NEGATIVE_INFINITY;
            case 2 -> -0.0f;
            default -> rnd.nextFloat() * 4f - 2f;
          };
        };
      }
      float[] w = new float[rows];
      for (int i = 0; i < rows; i++) {
        w[i] = mode == 3 ? (rnd.nextInt(8) + 1) / 8f : rnd.nextFloat() * 3f - 1f;
      }
      byte[] y = Reference.encode(yf, dt);
      float[] yq = Reference.decode(y, dt); // the values the dtype actually carries
      float[] want = new float[h];
      for (int c = 0; c < h; c++) {
        float total = 0.0f;
        int row = 0;
        for (int g = 0; g < nGroups; g++) {
          float acc = 0.0f;
          for (int i = 0; i < groups[g]; i++, row++) {
            acc = acc + w[row] * yq[row * h + c];
          }
          total = total + Reference.round(acc, dt);
        }
        want[c] = total;
      }
      byte[] wantBytes = Reference.encode(want, dt);
      byte[] got = NativeKernels.hostCombineToken(KernelShape.code(dt), y, w, groups, h);
      assertEquals(wantBytes.length, got.length);
      if (!Arrays.equals(wantBytes, got)) {
        float[] a = Reference.decode(wantBytes, dt);
        float[] b = Reference.decode(got, dt);
        for (int c = 0; c < h; c++) {
          boolean same = Float.floatToIntBits(a[c]) == Float.floatToIntBits(b[c])
              || (Float.isNaN(a[c]) && Float.isNaN(b[c]));
          if (!same) {
            fail(dt + " channel " + c + ": want " + a[c] + " got " + b[c] + " (mode " + mode
                + ", groups " + Arrays.toString(groups) + ")");
          }
        }
      }
    }
  }
}
