package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The cuda backend on the GPU (R virtual ranks on one device), through its communicators: the
 * host path and the device path (engine memory, engine streams) against the kit's naive reference
 * ({@link KernelCases}) and against the CPU communicator, bit for bit, fused and unfused. Skipped
 * with "CUDA backend unavailable: &lt;reason&gt;" where there is no GPU (here, CI).
 */
class CudaWorldGpuTest {

  @BeforeEach
  void gpu() {
    NativeTestSupport.requireGpu();
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void dispatchAndCombineMatchReference(DType dtype) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 10; iter++) {
        int ranks = 1 + rnd.nextInt(8);
        int local = rnd.nextBoolean() ? ranks : 1;
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 8));
        int hidden = dtype == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(3))
            : new int[] {128, 256, 7 * 128, 100, 36, 33}[rnd.nextInt(6)];
        Workload wl = KernelCases.random(rnd, ranks, local, s, experts, k, hidden, dtype, 300, 0.1);
        check(wl, KernelCases.shape(wl, 300), "iter " + iter);
      }
    });
  }

  /**
   * The kit's own random workloads ({@link Workload#random}: up to 16 ranks on any node split,
   * replicas anywhere, top-k up to 16, skewed and one-expert routings, odd hidden sizes).
   */
  @Test
  void kitRandomWorkloadsMatchReference() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      for (int iter = 0; iter < 12; iter++) {
        Workload wl = Workload.random(seed.value() + iter, 64);
        check(wl, KernelCases.shape(wl), "case " + iter);
      }
    });
  }

  @Test
  void emptyRanksTopk1AndOneHotExpert() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      Workload none = KernelCases.random(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0);
      check(none, KernelCases.shape(none, 0), "zero tokens");
      Workload top1 = KernelCases.random(rnd, 4, 4, 2, 8, 1, 256, DType.FP16, 500, 0.0);
      check(top1, KernelCases.shape(top1, 500), "top-1");
      Workload unrouted = KernelCases.random(rnd, 2, 2, 2, 4, 3, 128, DType.FP32, 50, 1.0);
      check(unrouted, KernelCases.shape(unrouted, 50), "all -1");
      KernelShape cfg = KernelCases.trivial(4, 4, 2, 256, 1, DType.BF16);
      check(KernelCases.routed(cfg, new int[] {700, 0, 3, 129}, (r, t, j) -> 0, rnd.nextLong()), cfg, "all to expert 0");
      KernelShape cfg2 = KernelCases.trivial(4, 2, 2, 128, 3, DType.FP32);
      Workload skewed = KernelCases.routed(cfg2, new int[] {64, 65, 0, 1}, (r, t, j) -> (t + 2 * j + r) % 6, rnd.nextLong());
      assertEquals(0, skewed.ref.rowsReceivedBy(3), "the case meant to leave rank 3 empty: " + skewed);
      check(skewed, cfg2, "rank 3 receives nothing");
    });
  }

  /** DeepSeek-like: 8 ranks, 288 slots (256 experts and replicas), top-8, hidden 7168; few tokens. */
  @Test
  void deepSeekShapeSmall() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (DType dt : new DType[] {DType.BF16, DType.FP8_E4M3}) {
        Workload wl = KernelCases.random(rnd, 8, 8, 36, 256, 8, 7168, dt, 96, 0.0);
        check(wl, KernelCases.shape(wl, 96), dt.toString());
      }
    });
  }

  /**
   * The device path against the CPU communicator on random shapes: engine device memory in, the
   * engine's rows as the receive buffer on odd iterations, an engine stream per rank.
   */
  @Test
  void deviceApiMatchesTheCpuCommunicator() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 8; iter++) {
        DType dt = DType.values()[rnd.nextInt(DType.values().length)];
        int ranks = 1 + rnd.nextInt(6);
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 6));
        int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(2)) : 8 + rnd.nextInt(300);
        Workload wl = KernelCases.random(rnd, ranks, rnd.nextBoolean() ? ranks : 1, s, experts, k, hidden, dt, 200, 0.1);
        KernelShape shape = KernelCases.shape(wl, 200);
        String at = "iter " + iter + " " + wl;
        Outputs cpu = Cpu.run(wl, shape);
        for (CommConfig.Variant v : CommConfig.Variant.values()) {
          Outputs got = Device.run(wl, shape, v, iter % 2 == 1);
          for (int r = 0; r < ranks; r++) {
            assertArrayEquals(cpu.recv()[r], got.recv()[r], at + " " + v + " received rows of rank " + r);
            assertArrayEquals(cpu.scales()[r], got.scales()[r], at + " " + v + " fp8 scales of rank " + r);
            assertArrayEquals(cpu.slots()[r], got.slots()[r], at + " " + v + " slot offsets of rank " + r);
            assertArrayEquals(cpu.out()[r], got.out()[r], at + " " + v + " combine of rank " + r);
          }
        }
      }
    });
  }

  /**
   * A shuffled combine on cuda delivers every token's combined row (the reference's bits) to its
   * random target, by source rank then token; an {@code into} too small fails every rank.
   */
  @Test
  void shuffledCombineDeliversTheReferenceRowsToTheTargets() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 6; iter++) {
        DType dt = DType.values()[rnd.nextInt(DType.values().length)];
        int ranks = 1 + rnd.nextInt(6);
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 6));
        int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK : 8 + rnd.nextInt(300);
        Workload wl = KernelCases.random(rnd, ranks, rnd.nextBoolean() ? ranks : 1, s, experts, k, hidden, dt, 100, 0.1);
        KernelShape shape = KernelCases.shape(wl, 100);
        byte[][] want = KernelCases.combine(wl);
        int[][] next = new int[ranks][];
        int[] arriving = new int[ranks];
        for (int r = 0; r < ranks; r++) {
          next[r] = new int[wl.tokens[r]];
          for (int t = 0; t < next[r].length; t++) arriving[next[r][t] = rnd.nextInt(ranks)]++;
        }
        String at = "iter " + iter + " " + wl;
        long rowBytes = (long) wl.hidden * wl.outType.bytes();
        try (CudaWorld world = open(shape)) {
          world.run(comm -> {
            int d = comm.rank();
            Dispatched got = comm.dispatch(wl.x(d), wl.routing(d));
            RowBuffer into = RowBuffer.of(MemorySegment.ofArray(new byte[(int) (Math.max(1, arriving[d]) * rowBytes)]),
                Math.max(1, arriving[d]), wl.hidden, wl.outType);
            var a = comm.combineShuffled(got, yRows(wl, d, got.receivedRows()), next[d], into);
            checkArrivals(a, into, d, next, arriving[d], want, rowBytes, at);
            return null;
          });
          if (Arrays.stream(arriving).anyMatch(n -> n > 1)) {
            List<String> msgs = messages(world, c -> {
              int d = c.rank();
              Dispatched got = c.dispatch(wl.x(d), wl.routing(d));
              RowBuffer one = RowBuffer.of(MemorySegment.ofArray(new byte[(int) rowBytes]), 1, wl.hidden, wl.outType);
              c.combineShuffled(got, yRows(wl, d, got.receivedRows()), next[d], one);
            });
            for (String m : msgs) assertTrue(m.contains("the shuffle buffer holds 1 rows"), m + " " + at);
          }
        }
      }
    });
  }

  /**
   * What a shuffled combine delivered to rank d: as many rows as the targets {@code next} send it,
   * by source rank then token, each the reference's combined row ({@code want[src]}).
   */
  static void checkArrivals(io.moeyard.comm.Arrivals a, RowBuffer into, int d, int[][] next, int arriving, byte[][] want,
      long rowBytes, String at) {
    assertEquals(arriving, a.rows(), "arrivals on rank " + d + " " + at);
    int i = 0;
    for (int src = 0; src < next.length; src++) {
      for (int t = 0; t < next[src].length; t++) {
        if (next[src][t] != d) continue;
        assertEquals(src, a.sourceRank(i), "arrival " + i + " source on rank " + d + " " + at);
        assertEquals(t, a.sourceToken(i), "arrival " + i + " token on rank " + d + " " + at);
        assertArrayEquals(Arrays.copyOfRange(want[src], (int) (t * rowBytes), (int) ((t + 1) * rowBytes)),
            into.segment().asSlice(i * rowBytes, rowBytes).toArray(ValueLayout.JAVA_BYTE),
            "arrival " + i + " (rank " + src + " token " + t + ") on rank " + d + " " + at);
        i++;
      }
    }
  }

  /** Steady-state device-path calls allocate no device memory (cudaMemGetInfo before and after). */
  @Test
  void steadyStateCallsAllocateNothing() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      Workload wl = KernelCases.random(seed.random(), 4, 4, 4, 16, 4, 512, DType.BF16, 256, 0.0);
      KernelShape shape = KernelCases.shape(wl, 256);
      try (CudaWorld world = open(shape); DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
        long[] before = new long[1];
        world.run(c -> {
          for (int i = 0; i < 20; i++) {
            if (i == 2 && c.rank() == 0) before[0] = CudaWorld.deviceMemory()[0];
            DeviceDispatched d = c.dispatch(eng.x(c.rank()), eng.routing(c.rank()), eng.stream(c.rank()));
            c.combine(d, eng.y(c.rank(), d.receivedRows()), eng.out(c.rank()), eng.stream(c.rank()));
          }
          return null;
        });
        long after = CudaWorld.deviceMemory()[0];
        assertEquals(before[0], after, "free device memory changed over 18 steady-state calls");
      }
    });
  }

  @Test
  void badRoutingOnOneRankFailsEveryRankNamingIt() {
    var cfg = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
    // read by both rank threads: drawn once, before they start
    byte[] x = KernelCases.randomRows(new SplittableRandom(1), 2, 128, DType.BF16);
    try (CudaWorld world = open(cfg)) {
      for (int[] bad : new int[][] {{0, 4, 1, 2}, {1, 1, 0, 2}, {0, -2, 1, 2}}) {
        List<String> msgs = messages(world, c -> {
          int[] idx = c.rank() == 1 ? bad : new int[] {0, 1, 2, 3};
          c.dispatch(RowBuffer.of(MemorySegment.ofArray(x), 2, 128, DType.BF16), new Routing(2, 2, idx, new float[] {1, 1, 1, 1}));
        });
        assertEquals(msgs.get(0), msgs.get(1));
        assertTrue(msgs.get(0).startsWith("dispatch: rank 1: "), msgs.get(0));
      }
      // NaN weight of a routed entry
      List<String> msgs = messages(world, c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(new byte[2 * 256]), 2, 128, DType.BF16),
          new Routing(2, 2, new int[] {0, 1, 2, 3}, new float[] {1, c.rank() == 0 ? Float.NaN : 1, 1, 1})));
      assertTrue(msgs.get(1).contains("rank 0: topkWeights[0][1] = NaN is not finite"), msgs.get(1));
      // a fitting call then works on the same world
      world.run(c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(new byte[2 * 256]), 2, 128, DType.BF16),
          new Routing(2, 2, new int[] {0, 1, 2, 3}, new float[] {1, 1, 1, 1})));
    }
  }

  @Test
  void moreRowsThanTheReceiveBufferFailsBeforeAnyKernelWrites() {
    ExpertMap map = ExpertMap.trivial(Topology.singleNode(2), 4);
    CommConfig comm = CommConfig.of(8, 128, 1, DType.BF16, DType.BF16).withReceiveRows(10);
    // every token to expert 0 (16 rows to rank 0), then spread over the four slots (8 rows each)
    Workload hot = Workload.of(map, 1, 128, DType.BF16, new int[] {8, 8}, new int[][] {new int[8], new int[8]}, 1);
    int[] spread = {0, 1, 2, 3, 0, 1, 2, 3};
    Workload even = Workload.of(map, 1, 128, DType.BF16, new int[] {8, 8}, new int[][] {spread, spread}, 2);
    try (CudaWorld world = CudaWorld.open(map, comm)) {
      List<String> msgs = messages(world, c -> c.dispatch(hot.x(c.rank()), hot.routing(c.rank())));
      assertEquals("dispatch: rank 0 would receive 16 rows, its receive buffer holds 10 (CommConfig.receiveRows)", msgs.get(0));
      assertEquals(msgs.get(0), msgs.get(1));
      // engine rows with room for all 16 change nothing: each row's weight (and the unfused
      // path's staging) is the communicator's, sized for receiveRows
      try (DeviceWorkload eng = new DeviceWorkload(hot, 20)) {
        for (CommConfig.Variant v : CommConfig.Variant.values()) {
          world.useVariant(v);
          msgs = messages(world, c -> c.dispatch(eng.x(c.rank()), eng.routing(c.rank()), eng.into(c.rank()), eng.stream(c.rank())));
          assertEquals("dispatch: rank 0 would receive 16 rows, its receive buffer holds 10 (CommConfig.receiveRows)", msgs.get(0), v.name());
        }
        world.useVariant(comm.variant());
      }
      List<Integer> rows = world.run(c -> c.dispatch(even.x(c.rank()), even.routing(c.rank())).receivedRows());
      assertEquals(List.of(even.ref.rowsReceivedBy(0), even.ref.rowsReceivedBy(1)), rows);
      assertEquals(List.of(8, 8), rows);
    }
  }

  @Test
  void misuseOfTheDevicePathFailsEveryRank() {
    var cfg = KernelCases.trivial(2, 2, 2, 128, 2, DType.BF16);
    Workload wl = KernelCases.routed(cfg, new int[] {4, 4}, (r, t, j) -> (t + j) % 4, 2);
    try (CudaWorld world = open(cfg); CudaWorld other = open(cfg); DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
      // a host address where device memory belongs
      try (Arena a = Arena.ofConfined()) {
        MemorySegment host = a.allocate(4096);
        List<String> msgs = messages(world, c -> c.dispatch(c.rank() == 0 ? DeviceRows.of(host.address(), 4, 128, DType.BF16)
            : eng.x(c.rank()), eng.routing(c.rank()), eng.stream(c.rank())));
        assertTrue(msgs.get(1).contains("rank 0: x (0x") && msgs.get(1).contains("not device memory"), msgs.get(1));
      }
      // a handle of another world's communicator
      DeviceDispatched[] foreign = new DeviceDispatched[2];
      other.run(c -> foreign[c.rank()] = c.dispatch(eng.x(c.rank()), eng.routing(c.rank()), eng.stream(c.rank())));
      world.run(c -> c.dispatch(eng.x(c.rank()), eng.routing(c.rank()), eng.stream(c.rank())));
      List<String> msgs = messages(world, c -> c.combine(foreign[c.rank()], eng.y(c.rank(), foreign[c.rank()].receivedRows()),
          eng.out(c.rank()), eng.stream(c.rank())));
      assertEquals("combine: rank 0: the dispatch result belongs to another communicator", msgs.get(1));
      // the communicator's own receive rows handed in as the engine's "into"
      msgs = messages(world, c -> c.dispatch(eng.x(c.rank()), eng.routing(c.rank()),
          world.communicator(1 - c.rank()).receiveRows(), eng.stream(c.rank())));
      assertTrue(msgs.get(0).contains("lies in rank 1's communicator buffers"), msgs.get(0));
    }
  }

  @Test
  void asyncFormsGiveTheSameResults() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      Workload wl = KernelCases.random(seed.random(), 4, 4, 3, 10, 3, 256, DType.BF16, 200, 0.05);
      byte[][] want = KernelCases.combine(wl);
      try (CudaWorld world = open(KernelCases.shape(wl, 200))) {
        List<byte[]> got = world.run(c -> {
          int r = c.rank();
          Dispatched d = c.dispatchAsync(wl.x(r), wl.routing(r)).join();
          RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[want[r].length]), wl.tokens[r], wl.hidden, wl.outType);
          c.combineAsync(d, yRows(wl, r, d.receivedRows()), out).join();
          return out.segment().toArray(ValueLayout.JAVA_BYTE);
        });
        for (int r = 0; r < wl.ranks(); r++) assertArrayEquals(want[r], got.get(r), "rank " + r + " " + wl);
      }
    });
  }

  /** Not a benchmark: checks that timings are reported, and prints them for the GPU run's log. */
  @Test
  void timingsAreReported() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      Workload wl = KernelCases.random(seed.random(), 8, 8, 32, 256, 8, 7168, DType.BF16, 512, 0.0);
      KernelShape shape = KernelCases.shape(wl, 512);
      try (CudaWorld world = open(shape); DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
        world.timing(true);
        for (CommConfig.Variant v : CommConfig.Variant.values()) {
          world.useVariant(v);
          float[][] ms = new float[2][7];
          world.run(c -> {
            for (int i = 0; i < 7; i++) {
              DeviceDispatched d = c.dispatch(eng.x(c.rank()), eng.routing(c.rank()), eng.stream(c.rank()));
              if (c.rank() == 0) ms[0][i] = world.lastDeviceMs();
              c.combine(d, eng.y(c.rank(), d.receivedRows()), eng.out(c.rank()), eng.stream(c.rank()));
              if (c.rank() == 0) ms[1][i] = world.lastDeviceMs();
            }
            return null;
          });
          Arrays.sort(ms[0]);
          Arrays.sort(ms[1]);
          assertTrue(ms[0][3] > 0 && ms[1][3] > 0, v + " timings " + ms[0][3] + " / " + ms[1][3]);
          System.out.printf("timing %s: dispatch %.3f ms, combine %.3f ms (median of 7)%n", v, ms[0][3], ms[1][3]);
        }
        world.timing(false);
        System.out.printf("timing copy of 64 MiB: %.3f ms%n", world.copyMillis(64L << 20, 7));
      }
    });
  }

  // ---------------------------------------------------------------------------------------------

  private static CudaWorld open(KernelShape shape) {
    return CudaWorld.open(shape.map(), shape.comm());
  }

  private interface RankBody {
    void run(CudaCommunicator c);
  }

  /** Runs body on every rank, each expected to throw a CollectiveException; returns their messages by rank. */
  private static List<String> messages(CudaWorld world, RankBody body) {
    return world.run(c -> {
      CollectiveException e = assertThrows(CollectiveException.class, () -> body.run(c));
      return e.getMessage();
    });
  }

  /** The first {@code rows} of rank d's expert outputs (as many as the backend says it received). */
  static RowBuffer yRows(Workload wl, int d, int rows) {
    return RowBuffer.of(MemorySegment.ofArray(wl.y[d]), rows, wl.hidden, wl.outType);
  }

  /** Both variants through the host path: dispatch and combine equal the reference, pair records too. */
  private static void check(Workload wl, KernelShape shape, String what) {
    String ctx = what + " " + wl;
    KernelCases.Expected[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    try (CudaWorld world = open(shape)) {
      for (CommConfig.Variant v : CommConfig.Variant.values()) {
        world.useVariant(v);
        world.run(comm -> {
          checkRank(comm, wl, shape, want, wantOut, v, ctx);
          return null;
        });
      }
    }
  }

  /**
   * One rank's host-path dispatch and combine on the world's current variant {@code v}: rows,
   * slot counts, weights, FP8 scales, pair records (fused) and the combine output equal the
   * reference's; returns the dispatch. Also a rank process's check ({@link CudaWorldRankMain}) and
   * the node relay's ({@link RelayGpuTest}).
   */
  static Dispatched checkRank(CudaCommunicator comm, Workload wl, KernelShape shape, KernelCases.Expected[] want, byte[][] wantOut,
      CommConfig.Variant v, String ctx) {
    int scaleCols = wl.scalesPerRow();
    int d = comm.rank();
    String at = v + " rank " + d + " " + ctx;
    Dispatched got = comm.dispatch(wl.x(d), wl.routing(d));
    assertEquals(want[d].rows(), got.receivedRows(), "rows " + at);
    int[] counts = new int[shape.slotsPerRank()];
    for (int e = 0; e < counts.length; e++) counts[e] = got.slotCount(e);
    assertArrayEquals(want[d].slotCounts(), counts, "slot counts " + at);
    RowBuffer recv = got.received();
    assertArrayEquals(want[d].recvX(), recv.segment().asSlice(recv.offset(), (long) got.receivedRows() * recv.rowBytes())
        .toArray(ValueLayout.JAVA_BYTE), "recvX " + at);
    float[] wts = new float[got.receivedRows()];
    for (int i = 0; i < wts.length; i++) wts[i] = got.receivedWeight(i);
    assertArrayEquals(want[d].recvWeights(), wts, "recvWeights " + at);
    if (scaleCols > 0) {
      assertArrayEquals(want[d].recvScales(), recv.scales().asSlice(0, 4L * got.receivedRows() * scaleCols)
          .toArray(ValueLayout.JAVA_FLOAT), "recvScales " + at);
    }
    if (v == CommConfig.Variant.FUSED) {
      CudaRows rows = (CudaRows) got.rowsOf(comm);
      assertArrayEquals(want[d].pairSrc(), rows.pairSrc, "pair sources " + at);
      assertArrayEquals(want[d].pairToken(), rows.pairToken, "pair tokens " + at);
    }
    RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[wantOut[d].length]), wl.tokens[d], wl.hidden, wl.outType);
    comm.combine(got, yRows(wl, d, got.receivedRows()), out);
    assertArrayEquals(wantOut[d], out.segment().toArray(ValueLayout.JAVA_BYTE), "combine " + at);
    return got;
  }

  /** Received rows, FP8 scales, slot offsets and combine outputs per rank, as raw bytes. */
  private record Outputs(byte[][] recv, float[][] scales, int[][] slots, byte[][] out) {}

  /** The CPU communicator's outputs on a workload (ranks as threads of a CpuWorld). */
  private static final class Cpu {
    static Outputs run(Workload wl, KernelShape shape) {
      int n = wl.ranks();
      int scaleCols = shape.scaleCols();
      Outputs o = new Outputs(new byte[n][], new float[n][], new int[n][], new byte[n][]);
      try (CpuWorld world = CpuWorld.create(shape.map().topology())) {
        world.run(t -> {
          int r = t.rank();
          try (Communicator comm = Communicator.cpu(t, shape.map(), shape.comm())) {
            Dispatched d = comm.dispatch(wl.x(r), wl.routing(r));
            RowBuffer recv = d.received();
            o.recv()[r] = recv.segment().asSlice(recv.offset(), (long) d.receivedRows() * recv.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
            o.scales()[r] = scaleCols > 0
                ? recv.scales().asSlice(0, 4L * d.receivedRows() * scaleCols).toArray(ValueLayout.JAVA_FLOAT) : new float[0];
            o.slots()[r] = slotOffsets(d);
            RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[wl.tokens[r] * shape.combineRowBytes()]), wl.tokens[r],
                wl.hidden, wl.outType);
            comm.combine(d, yRows(wl, r, d.receivedRows()), out);
            o.out()[r] = out.segment().toArray(ValueLayout.JAVA_BYTE);
          }
          return null;
        });
      }
      return o;
    }
  }

  private static int[] slotOffsets(Dispatched d) {
    int[] o = new int[d.slots() + 1];
    for (int e = 0; e <= d.slots(); e++) o[e] = d.slotOffset(e);
    return o;
  }

  /** The device path's outputs: engine memory in, downloaded after the engine's stream. */
  private static final class Device {
    static Outputs run(Workload wl, KernelShape shape, CommConfig.Variant v, boolean withInto) {
      int n = wl.ranks();
      int scaleCols = shape.scaleCols();
      Outputs o = new Outputs(new byte[n][], new float[n][], new int[n][], new byte[n][]);
      try (CudaWorld world = open(shape); DeviceWorkload eng = new DeviceWorkload(wl, withInto ? shape.receiveRows() : 0)) {
        world.useVariant(v);
        world.run(comm -> {
          int r = comm.rank();
          DeviceDispatched d = withInto
              ? comm.dispatch(eng.x(r), eng.routing(r), eng.into(r), eng.stream(r))
              : comm.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
          if (withInto) assertEquals(eng.into(r).address(), d.received().address());
          comm.combine(d, eng.y(r, d.receivedRows()), eng.out(r), eng.stream(r));
          Dispatched h = comm.download(d);
          RowBuffer recv = h.received();
          o.recv()[r] = recv.segment().asSlice(recv.offset(), (long) h.receivedRows() * recv.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
          o.scales()[r] = scaleCols > 0
              ? recv.scales().asSlice(0, 4L * h.receivedRows() * scaleCols).toArray(ValueLayout.JAVA_FLOAT) : new float[0];
          o.slots()[r] = slotOffsets(h);
          o.out()[r] = eng.outBytes(r);
          return null;
        });
      }
      return o;
    }
  }
}
