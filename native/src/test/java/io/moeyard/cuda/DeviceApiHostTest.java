package io.moeyard.cuda;

import io.moeyard.engine.testkit.TestSeed;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The device-memory API's argument checks, its count arithmetic and its place behind the
 * {@link Communicator} interface: plain Java, no GPU. The address facts the checks ask the device
 * for ({@link CallChecks.Memory}) come from a stand-in that says what a real device would of
 * three ranges: device memory of device 0, of device 1, and host memory; plus the world's own
 * buffers of rank 1 and rank 0's receive rows.
 */
class DeviceApiHostTest {
  private static final long DEV = 0x7f00_0000_0000L;
  private static final long DEV1 = 0x7e00_0000_0000L;
  private static final long HOST = 0x5500_0000_0000L;
  private static final long RANK1 = 0x7f10_0000_0000L;
  private static final long RECV0 = 0x7f20_0000_0000L;
  private static final long GB = 1L << 30;

  private static final CallChecks.Memory MEM = new CallChecks.Memory() {
    @Override
    public int[] kind(long a) {
      if (a >= DEV && a < DEV + 256 * GB) return new int[] {2, 0};
      if (a >= DEV1 && a < DEV1 + GB) return new int[] {2, 1};
      if (a >= HOST && a < HOST + GB) return new int[] {1, -1};
      return new int[] {0, -1};
    }

    @Override
    public int ownerOf(long a, long n) {
      if (a < RANK1 + GB && RANK1 < a + n) return 1;
      if (a < RECV0 + GB && RECV0 < a + n) return 0;
      return -1;
    }

    @Override
    public boolean inReceiveRows(int rank, long a, long n) {
      return rank == 0 && a >= RECV0 && a + n <= RECV0 + GB;
    }
  };

  private final KernelShape shape = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
  private final int max = KernelCases.TRIVIAL_MAX_TOKENS;

  private static DeviceRows rows(long a, int n) {
    return DeviceRows.of(a, n, 128, DType.BF16);
  }

  private String dispatch(DeviceRows x, DeviceRouting r, DeviceRows into) {
    return CallChecks.dispatch(shape, 0, false, x, r, into, CudaStream.DEFAULT, MEM);
  }

  private static DeviceRouting routing(long a, int tokens, int topk) {
    return new DeviceRouting(a, a + 4L * tokens * topk, tokens, topk);
  }

  @Test
  void goodDeviceArgumentsPass() {
    assertNull(dispatch(rows(DEV, 8), routing(DEV + GB, 8, 2), null));
    assertNull(dispatch(rows(DEV, 8), routing(DEV + GB, 8, 2), rows(DEV + 2 * GB, 100)));
    assertNull(dispatch(rows(DEV, 0), routing(DEV + GB, 0, 2), null));
    assertNull(dispatch(rows(DEV, max), routing(DEV + GB, max, 2), null));
  }

  @Test
  void nullAndZeroAddressesAreNamed() {
    assertMsg("device rows: address is 0", () -> DeviceRows.of(0L, 4, 128, DType.BF16));
    assertMsg("topkIdx address is 0", () -> new DeviceRouting(0, DEV, 4, 2));
    assertMsg("topkWeights address is 0", () -> new DeviceRouting(DEV, 0, 4, 2));
    assertMsg("fp8 rows need a scales address", () -> DeviceRows.of(DEV, 4, 128, DType.FP8_E4M3));
    assertMsg("scales are only carried for fp8", () -> new DeviceRows(DEV, 4, 128, DType.BF16, DEV + 64));
    assertMsg("rows must be >= 0, got -1", () -> DeviceRows.of(DEV, -1, 128, DType.BF16));
    assertEquals("rank 0: x is null", dispatch(null, routing(DEV, 1, 2), null));
    assertEquals("rank 0: routing is null", dispatch(rows(DEV, 1), null, null));
    assertTrue(CallChecks.dispatch(shape, 0, false, rows(DEV, 1), routing(DEV + GB, 1, 2), null, null, MEM)
        .contains("stream is null"));
  }

  @Test
  void heapSegmentsAreRefusedOnTheDevicePath() {
    MemorySegment heap = MemorySegment.ofArray(new byte[1024]);
    assertMsg("a heap segment cannot be device memory", () -> DeviceRows.of(heap, 4, 128, DType.BF16, null));
    assertMsg("topkIdx: a heap segment", () -> DeviceRouting.of(heap, MemorySegment.ofAddress(DEV), 1, 2));
    DeviceRows ok = DeviceRows.of(MemorySegment.ofAddress(DEV), 4, 128, DType.BF16, null);
    assertEquals(DEV, ok.address());
  }

  @Test
  void sizesBeyondTheConfigAreNamed() {
    assertEquals("rank 0: routing has " + (max + 1) + " tokens, the communicator was built for at most " + max,
        dispatch(rows(DEV, max + 1), routing(DEV + GB, max + 1, 2), null));
    assertEquals("rank 0: routing has top-3, the communicator was built for top-2",
        dispatch(rows(DEV, 4), routing(DEV + GB, 4, 3), null));
    assertEquals("rank 0: x is 256 x bf16, the communicator was built for 128 x bf16",
        dispatch(DeviceRows.of(DEV, 4, 256, DType.BF16), routing(DEV + GB, 4, 2), null));
    assertEquals("rank 0: x is 128 x fp16, the communicator was built for 128 x bf16",
        dispatch(DeviceRows.of(DEV, 4, 128, DType.FP16), routing(DEV + GB, 4, 2), null));
    assertEquals("rank 0: x has 3 rows, the routing has 4 tokens", dispatch(rows(DEV, 3), routing(DEV + GB, 4, 2), null));
    assertEquals("rank 0: the receive rows is 128 x fp32, the communicator was built for 128 x bf16",
        dispatch(rows(DEV, 4), routing(DEV + GB, 4, 2), DeviceRows.of(DEV + 2 * GB, 4, 128, DType.FP32)));
  }

  @Test
  void addressesThatAreNotOurDevicesMemoryAreNamed() {
    assertEquals("rank 0: x (0x" + Long.toHexString(HOST) + ") is host memory, not device memory",
        dispatch(rows(HOST, 4), routing(DEV + GB, 4, 2), null));
    assertTrue(dispatch(rows(DEV, 4), routing(0x1000, 4, 2), null)
        .startsWith("rank 0: topkIdx (0x1000) is not memory CUDA knows"));
    assertEquals("rank 0: x (0x" + Long.toHexString(DEV1) + ") is memory of device 1, the world runs on device 0",
        dispatch(rows(DEV1, 4), routing(DEV + GB, 4, 2), null));
    // a buffer of the communicator itself (rank 1's) handed in as the engine's
    assertEquals("rank 0: the receive rows (0x" + Long.toHexString(RANK1) + ") lies in rank 1's communicator buffers, not memory of the engine",
        dispatch(rows(DEV, 4), routing(DEV + GB, 4, 2), rows(RANK1, 8)));
    assertTrue(dispatch(rows(RECV0 + 128, 4), routing(DEV + GB, 4, 2), null).contains("lies in rank 0's communicator buffers"));
  }

  /** Rows that do not start on a 16-byte boundary are named before the device sees them. */
  @Test
  void misalignedRowsAreNamed() {
    assertEquals("rank 0: x (0x" + Long.toHexString(DEV + 8) + ") is not 16-byte aligned: the kernels move rows 16 bytes at a time",
        dispatch(rows(DEV + 8, 4), routing(DEV + GB, 4, 2), null));
    assertTrue(dispatch(rows(DEV, 4), routing(DEV + GB, 4, 2), rows(DEV + 2 * GB + 4, 8)).startsWith("rank 0: the receive rows (0x"));
    assertEquals(null, dispatch(rows(DEV + 16, 4), routing(DEV + GB + 4, 4, 2), null), "routing needs only its own alignment");
  }

  @Test
  void combineChecksNameTheHandleAndTheBuffers() {
    Object me = new Object();
    DeviceDispatched d = new DeviceDispatched(me, 3, CommConfig.Variant.FUSED, rows(RECV0, 10), new int[] {0, 4, 10}, 6, 5);
    CommConfig.Variant fused = CommConfig.Variant.FUSED;
    assertNull(combine(me, 3, fused, d, rows(DEV, 10), rows(DEV + GB, 6)));
    // experts may write their outputs over their own inputs (rank 0's receive rows)
    assertNull(combine(me, 3, fused, d, rows(RECV0, 10), rows(DEV + GB, 6)));
    assertEquals("rank 0: the dispatch result belongs to another communicator",
        combine(new Object(), 3, fused, d, rows(DEV, 10), rows(DEV + GB, 6)));
    assertTrue(combine(me, 4, fused, d, rows(DEV, 10), rows(DEV + GB, 6)).contains("from an earlier dispatch (3; the latest is 4)"));
    DeviceDispatched u = new DeviceDispatched(me, 3, CommConfig.Variant.UNFUSED, rows(RECV0, 10), new int[] {0, 4, 10}, 6, 5);
    assertTrue(combine(me, 3, fused, u, rows(DEV, 10), rows(DEV + GB, 6)).contains("needs the pair records of a fused dispatch"));
    assertNull(combine(me, 3, CommConfig.Variant.UNFUSED, d, rows(DEV, 10), rows(DEV + GB, 6)));
    assertEquals("rank 0: expert output has 9 rows, this rank received 10", combine(me, 3, fused, d, rows(DEV, 9), rows(DEV + GB, 6)));
    assertEquals("rank 0: out has 5 rows, this rank dispatched 6 tokens", combine(me, 3, fused, d, rows(DEV, 10), rows(DEV + GB, 5)));
    assertTrue(combine(me, 3, fused, d, rows(DEV, 10), rows(RECV0, 6)).contains("out (0x"));
    assertTrue(combine(me, 3, fused, d, rows(RANK1, 10), rows(DEV, 6)).contains("lies in rank 1's communicator buffers"));
    assertEquals("rank 0: the dispatch result is null", combine(me, 3, fused, null, rows(DEV, 10), rows(DEV, 6)));
  }

  private String combine(Object me, long gen, CommConfig.Variant v, DeviceDispatched d, DeviceRows y, DeviceRows out) {
    return CallChecks.combine(shape, 0, false, me, gen, v, d, y, out, CudaStream.DEFAULT, MEM);
  }

  @Test
  void aClosedCommunicatorIsNamedFirst() {
    assertEquals("rank 1: the communicator is closed",
        CallChecks.dispatch(shape, 1, true, null, null, null, null, MEM));
    assertEquals("rank 1: the communicator is closed",
        CallChecks.combine(shape, 1, true, null, 0, CommConfig.Variant.FUSED, null, null, null, null, MEM));
    assertEquals("rank 1: the communicator is closed", CallChecks.hostDispatch(shape, 1, true, null, null, null));
    assertEquals("rank 1: the communicator is closed", CallChecks.hostCombine(shape, 1, true, null, null, 0, 0));
  }

  @Test
  void hostPathChecks() {
    try (Arena a = Arena.ofConfined()) {
      RowBuffer x = RowBuffer.allocate(a, 4, 128, DType.BF16);
      Routing r = new Routing(4, 2, new int[8], new float[8]);
      assertNull(CallChecks.hostDispatch(shape, 0, false, x, r, null));
      assertEquals("rank 0: x is 128 x fp16, the communicator was built for 128 x bf16",
          CallChecks.hostDispatch(shape, 0, false, RowBuffer.allocate(a, 4, 128, DType.FP16), r, null));
      assertEquals("rank 0: x has 4 rows, the routing has 5 tokens",
          CallChecks.hostDispatch(shape, 0, false, x, new Routing(5, 2, new int[10], new float[10]), null));
      assertTrue(CallChecks.hostDispatch(shape, 0, false, x, new Routing(4, 2, new int[7], new float[8]), null)
          .contains("routing arrays hold 7 ids"));
      assertEquals("rank 0: expert output has 3 rows, this rank received 4",
          CallChecks.hostCombine(shape, 0, false, RowBuffer.allocate(a, 3, 128, DType.BF16), x, 4, 4));
    }
  }

  /** The host's count arithmetic (receive rows, slot offsets, staging, row sources) vs brute force. */
  @Test
  void worldCountsMatchBruteForce() {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    for (int iter = 0; iter < 50; iter++) {
      int ranks = 1 + rnd.nextInt(6);
      int spr = 1 + rnd.nextInt(5);
      int p = ranks * spr;
      int[][] totals = new int[ranks][p + ranks];
      int[] tokens = new int[ranks];
      for (int q = 0; q < ranks; q++) {
        tokens[q] = rnd.nextInt(50);
        for (int s = 0; s < p + ranks; s++) totals[q][s] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(7);
      }
      WorldCounts c = new WorldCounts(tokens, totals, spr);
      String at = "seed " + seed + " iter " + iter;
      for (int d = 0; d < ranks; d++) {
        // the rows of d, slot by slot, source by source: what every row's source is
        int[] src = new int[0];
        int[] offs = new int[spr + 1];
        int[] staging = new int[ranks * spr + 1];
        for (int ls = 0; ls < spr; ls++) {
          offs[ls] = src.length;
          for (int q = 0; q < ranks; q++) {
            int n = totals[q][d * spr + ls];
            int old = src.length;
            src = Arrays.copyOf(src, old + n);
            Arrays.fill(src, old, old + n, q);
          }
        }
        offs[spr] = src.length;
        int n = 0;
        int pairs = 0;
        for (int q = 0; q < ranks; q++) {
          for (int ls = 0; ls < spr; ls++) {
            staging[q * spr + ls] = n;
            n += totals[q][d * spr + ls];
          }
          pairs += totals[q][p + d];
        }
        staging[ranks * spr] = n;
        assertEquals(src.length, c.rows[d], at);
        assertEquals(pairs, c.pairs[d], at);
        assertTrue(Arrays.equals(offs, c.slotOffsets(d)), at);
        assertTrue(Arrays.equals(staging, c.stagingPrefix(d)), at);
        for (int row = 0; row < src.length; row++) assertEquals(src[row], c.rowSourceRank(d, row), at + " row " + row);
      }
      for (int q = 0; q < ranks; q++) {
        int[] want = new int[p + 1];
        for (int s = 0; s < p; s++) want[s + 1] = want[s] + totals[q][s];
        assertTrue(Arrays.equals(want, c.slotPrefix(q)), at);
      }
    }
  }

  /** cpu and cuda are one API: every Communicator method is implemented by the cuda communicator. */
  @Test
  void theCudaCommunicatorIsACommunicator() throws Exception {
    assertTrue(Communicator.class.isAssignableFrom(CudaCommunicator.class));
    for (Method m : Communicator.class.getMethods()) {
      if (Modifier.isStatic(m.getModifiers()) || m.isDefault()) continue;
      Method impl = CudaCommunicator.class.getMethod(m.getName(), m.getParameterTypes());
      assertTrue(!Modifier.isAbstract(impl.getModifiers()), m.toString());
    }
    // the same engine types on both: ExpertMap / CommConfig in, Dispatched out
    assertEquals(io.moeyard.comm.Dispatched.class,
        CudaCommunicator.class.getMethod("dispatch", RowBuffer.class, Routing.class).getReturnType());
  }

  @Test
  void openWithoutAGpuSaysWhy() {
    CudaAvailability a = CudaBackend.availability();
    org.junit.jupiter.api.Assumptions.assumeFalse(a.available(), "a GPU is available here");
    var cfg = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
    CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> CudaWorld.open(cfg.map(), cfg.comm()));
    assertEquals(a.message(), e.getMessage());
    assertThrows(CudaUnavailableException.class, () -> DeviceBuffer.allocate(16));
    assertThrows(CudaUnavailableException.class, CudaWorld::deviceMemory);
    // a shape the kernels cannot take is named before the device is asked
    assertMsg("topk must be in [1, 16]: 17", () -> CudaWorld.open(cfg.map(), CommConfig.of(4, 128, 17, DType.BF16, DType.BF16)));
  }

  private static void assertMsg(String part, org.junit.jupiter.api.function.Executable ex) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, ex);
    assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' lacks '" + part + "'");
  }
}
