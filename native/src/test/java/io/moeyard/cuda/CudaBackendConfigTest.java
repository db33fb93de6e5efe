package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Config and input validation of the cuda backend: plain Java, runs everywhere. */
class CudaBackendConfigTest {

  private static final CudaDtype B = CudaDtype.BF16;

  @Test
  void trivialMapAndDerivedSizes() {
    var c = CudaBackend.Config.trivial(4, 2, 3, 7168, 8, CudaDtype.FP8_E4M3);
    assertEquals(12, c.slots());
    assertEquals(12, c.experts());
    assertEquals(7168, c.rowBytes());
    assertEquals(56, c.scaleCols());
    assertEquals(CudaDtype.BF16, c.combineDtype());
    assertEquals(2 * 7168, c.combineRowBytes());
    assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, c.csrOffsets());
    assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, c.csrSlots());
  }

  @Test
  void badConfigsAreRejectedWithTheValue() {
    int[][] ok = {{0}, {1, 3}, {2}};
    assertMsg("ranks", () -> new CudaBackend.Config(0, 1, 2, ok, 128, 2, B, B));
    assertMsg("ranks", () -> new CudaBackend.Config(65, 1, 2, ok, 128, 2, B, B));
    assertMsg("localRanks", () -> new CudaBackend.Config(2, 3, 2, ok, 128, 2, B, B));
    assertMsg("topk", () -> new CudaBackend.Config(2, 2, 2, ok, 128, 17, B, B));
    assertMsg("hidden % 128", () -> new CudaBackend.Config(2, 2, 2, ok, 100, 2, CudaDtype.FP8_E4M3, B));
    assertMsg("combine dtype", () -> new CudaBackend.Config(2, 2, 2, ok, 128, 2, B, CudaDtype.FP8_E4M3));
    assertMsg("slot 4 outside", () -> new CudaBackend.Config(2, 2, 2, new int[][] {{0}, {4}}, 128, 1, B, B));
    assertMsg("not ascending", () -> new CudaBackend.Config(2, 2, 2, new int[][] {{3, 1}}, 128, 1, B, B));
    assertMsg("mapped by two", () -> new CudaBackend.Config(2, 2, 2, new int[][] {{1}, {1, 2}}, 128, 1, B, B));
    assertMsg("no physical slot", () -> new CudaBackend.Config(2, 2, 2, new int[][] {{1}, {}}, 128, 1, B, B));
  }

  @Test
  void configCopiesTheMap() {
    int[][] m = {{0}, {1}};
    var c = new CudaBackend.Config(1, 1, 2, m, 128, 1, B, B);
    m[0][0] = 1;
    assertEquals(0, c.expertSlots()[0][0]);
  }

  @Test
  void badInputIsRejectedWithTheValue() {
    var c = CudaBackend.Config.trivial(2, 2, 2, 128, 2, B);
    byte[] x = new byte[2 * c.rowBytes()];
    float[] w = new float[4];
    CudaBackend.validate(c, 0, new CudaBackend.RankInput(2, x, null, new int[] {0, -1, 3, 1}, w));
    CudaBackend.validate(c, 0, new CudaBackend.RankInput(0, new byte[0], null, new int[0], new float[0]));
    assertMsg("= 4 outside [-1, 4)",
        () -> CudaBackend.validate(c, 0, new CudaBackend.RankInput(2, x, null, new int[] {0, 4, 1, 2}, w)));
    assertMsg("= -2 outside",
        () -> CudaBackend.validate(c, 1, new CudaBackend.RankInput(2, x, null, new int[] {0, -2, 1, 2}, w)));
    assertMsg("selects logical expert 1 twice",
        () -> CudaBackend.validate(c, 0, new CudaBackend.RankInput(2, x, null, new int[] {0, 2, 1, 1}, w)));
    assertMsg("x must have 512 bytes",
        () -> CudaBackend.validate(c, 0, new CudaBackend.RankInput(2, new byte[3], null, new int[4], w)));
    assertMsg("topkWeights must have 4",
        () -> CudaBackend.validate(c, 0, new CudaBackend.RankInput(2, x, null, new int[] {0, 1, 0, 1}, new float[3])));
    var f8 = CudaBackend.Config.trivial(2, 2, 2, 256, 1, CudaDtype.FP8_E4M3);
    assertMsg("FP8 scales must have 4 floats",
        () -> CudaBackend.validate(f8, 0, new CudaBackend.RankInput(2, new byte[512], null, new int[2], new float[2])));
  }

  private static void assertMsg(String part, org.junit.jupiter.api.function.Executable ex) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, ex);
    assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' lacks '" + part + "'");
  }
}
