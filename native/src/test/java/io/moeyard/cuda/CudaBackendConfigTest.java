package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import org.junit.jupiter.api.Test;

/** Shape and input validation of the cuda backend: plain Java, runs everywhere. */
class CudaBackendConfigTest {

  private static final DType B = DType.BF16;

  private static ExpertMap trivialMap(int ranks, int experts) {
    return ExpertMap.trivial(Topology.singleNode(ranks), experts);
  }

  @Test
  void trivialMapAndDerivedSizes() {
    var c = KernelCases.trivial(4, 2, 3, 7168, 8, DType.FP8_E4M3);
    assertEquals(12, c.slots());
    assertEquals(12, c.experts());
    assertEquals(2, c.localRanks());
    assertEquals(7168, c.rowBytes());
    assertEquals(56, c.scaleCols());
    assertEquals(DType.BF16, c.combineType());
    assertEquals(2 * 7168, c.combineRowBytes());
    assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, c.csrOffsets());
    assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, c.csrSlots());
  }

  @Test
  void replicasBecomeCsr() {
    ExpertMap m = ExpertMap.of(Topology.singleNode(2), 3, new int[] {0, 1, 2, 1});
    var c = KernelShape.of(m, CommConfig.of(8, 128, 2, B, B));
    assertArrayEquals(new int[] {0, 1, 3, 4}, c.csrOffsets());
    assertArrayEquals(new int[] {0, 1, 3, 2}, c.csrSlots());
    // every rank could send all of its tokens to each of the two local slots of a rank
    assertEquals(2 * 8 * 2, c.receiveRows());
    assertEquals(100, KernelShape.of(m, CommConfig.of(8, 128, 2, B, B).withReceiveRows(100)).receiveRows());
  }

  @Test
  void dtypeCodesAreTheKernels() {
    // DtypeCode in config.cuh
    assertEquals(0, KernelShape.code(DType.BF16));
    assertEquals(1, KernelShape.code(DType.FP16));
    assertEquals(2, KernelShape.code(DType.FP32));
    assertEquals(3, KernelShape.code(DType.FP8_E4M3));
  }

  @Test
  void badShapesAreRejectedWithTheValue() {
    CommConfig ok = CommConfig.of(16, 128, 2, B, B);
    assertMsg("ranks must be in [1, 64]: 65", () -> CudaBackend.check(trivialMap(65, 65), ok));
    assertMsg("topk must be in [1, 16]: 17", () -> CudaBackend.check(trivialMap(2, 4), CommConfig.of(16, 128, 17, B, B)));
    assertMsg("too many slots for the layout kernel: 12288",
        () -> CudaBackend.check(trivialMap(2, 12 * 1024), ok));
    assertMsg("worst-case receive buffer",
        () -> CudaBackend.check(trivialMap(64, 64 * 16), CommConfig.of(1 << 21, 128, 16, B, B)));
    // what the engine types refuse, they refuse naming the value too
    assertMsg("divisible by 128, got 100", () -> CommConfig.of(16, 100, 2, DType.FP8_E4M3, B));
    assertMsg("combineType fp8", () -> CommConfig.of(16, 128, 2, B, DType.FP8_E4M3));
    assertMsg("slot 1 maps to expert 4", () -> ExpertMap.of(Topology.singleNode(2), 2, new int[] {0, 4}));
    assertMsg("expert 1 has no physical slot", () -> ExpertMap.of(Topology.singleNode(2), 2, new int[] {0, 0}));
  }

  @Test
  void receiveBeyondTheBuffersIsNamedWithNeedAndCapacity() {
    assertEquals(null, CallChecks.receive(1, 10, 4, 10, true, 4));
    assertEquals("rank 1 would receive 11 rows, its receive buffer holds 10 (CommConfig.receiveRows)",
        CallChecks.receive(1, 11, 4, 10, true, 4));
    assertEquals("rank 3 would receive 11 rows, its receive buffer holds 10 (the rows it passed)",
        CallChecks.receive(3, 11, 4, 10, false, 4));
    assertEquals("rank 2 would receive 5 token-rank pairs, its pair records hold 4",
        CallChecks.receive(2, 10, 5, 10, true, 4));
  }

  private static void assertMsg(String part, org.junit.jupiter.api.function.Executable ex) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, ex);
    assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' lacks '" + part + "'");
  }
}
