package io.moeyard.cuda;

import io.moeyard.engine.testkit.TestSeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The cuda backend on the GPU (R virtual ranks on one device), through its communicators: the
 * host path and the device path (engine memory, engine streams) against the naive
 * {@link Reference} and against the CPU communicator, bit for bit, fused and unfused. Skipped with
 * "CUDA backend unavailable: &lt;reason&gt;" where there is no GPU (here, CI).
 */
class CudaWorldGpuTest {

  @BeforeEach
  void gpu() {
    NativeTestSupport.requireGpu();
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void dispatchAndCombineMatchReference(DType dtype) {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    for (int iter = 0; iter < 10; iter++) {
      int ranks = 1 + rnd.nextInt(8);
      int local = rnd.nextBoolean() ? ranks : 1;
      int s = 1 + rnd.nextInt(4);
      int experts = 1 + rnd.nextInt(ranks * s);
      int k = 1 + rnd.nextInt(Math.min(experts, 8));
      int hidden = dtype == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(3))
          : new int[] {128, 256, 7 * 128, 100, 36, 33}[rnd.nextInt(6)];
      var pb = Reference.randomProblem(rnd, ranks, local, s, experts, k, hidden, dtype, 300, 0.1);
      check(pb, rnd, "seed " + seed + " iter " + iter);
    }
  }

  @Test
  void emptyRanksTopk1AndOneHotExpert() {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    String at = "seed " + seed;
    check(Reference.randomProblem(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0), rnd, at + " zero tokens");
    check(Reference.randomProblem(rnd, 4, 4, 2, 8, 1, 256, DType.FP16, 500, 0.0), rnd, at + " top-1");
    check(Reference.randomProblem(rnd, 2, 2, 2, 4, 3, 128, DType.FP32, 50, 1.0), rnd, at + " all -1");
    var cfg = Reference.trivial(4, 4, 2, 256, 1, DType.BF16);
    check(Reference.routed(cfg, new int[] {700, 0, 3, 129}, (r, t, j) -> 0, rnd), rnd, at + " all to expert 0");
    var cfg2 = Reference.trivial(4, 2, 2, 128, 3, DType.FP32);
    check(Reference.routed(cfg2, new int[] {64, 65, 0, 1}, (r, t, j) -> (t + 2 * j + r) % 6, rnd), rnd,
        at + " rank 3 receives nothing");
  }

  @Test
  void deepSeekShapeSmall() {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    for (DType dt : new DType[] {DType.BF16, DType.FP8_E4M3}) {
      check(Reference.randomProblem(rnd, 8, 8, 36, 256, 8, 7168, dt, 96, 0.0), rnd, "seed " + seed + " " + dt);
    }
  }

  /**
   * The device path against the CPU communicator on random shapes: engine device memory in, the
   * engine's rows as the receive buffer on odd iterations, an engine stream per rank.
   */
  @Test
  void deviceApiMatchesTheCpuCommunicator() {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    for (int iter = 0; iter < 8; iter++) {
      DType dt = DType.values()[rnd.nextInt(DType.values().length)];
      int ranks = 1 + rnd.nextInt(6);
      int s = 1 + rnd.nextInt(4);
      int experts = 1 + rnd.nextInt(ranks * s);
      int k = 1 + rnd.nextInt(Math.min(experts, 6));
      int hidden = dt == DType.FP8_E4M3 ? 128 * (1 + rnd.nextInt(2)) : 8 + rnd.nextInt(300);
      var pb = Reference.randomProblem(rnd, ranks, rnd.nextBoolean() ? ranks : 1, s, experts, k, hidden, dt, 200, 0.1);
      String at = "seed " + seed + " iter " + iter + " R=" + ranks + " K=" + k + " H=" + hidden + " " + dt;
      byte[][] y = outputs(pb, rnd);
      Outputs cpu = Cpu.run(pb, y);
      for (CommConfig.Variant v : CommConfig.Variant.values()) {
        boolean into = iter % 2 == 1;
        Outputs got = Device.run(pb, y, v, into);
        for (int r = 0; r < ranks; r++) {
          assertArrayEquals(cpu.recv()[r], got.recv()[r], at + " " + v + " received rows of rank " + r);
          assertArrayEquals(cpu.scales()[r], got.scales()[r], at + " " + v + " fp8 scales of rank " + r);
          assertArrayEquals(cpu.slots()[r], got.slots()[r], at + " " + v + " slot offsets of rank " + r);
          assertArrayEquals(cpu.out()[r], got.out()[r], at + " " + v + " combine of rank " + r);
        }
      }
    }
  }

  /** Steady-state device-path calls allocate no device memory (cudaMemGetInfo before and after). */
  @Test
  void steadyStateCallsAllocateNothing() {
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    var pb = Reference.randomProblem(rnd, 4, 4, 4, 16, 4, 512, DType.BF16, 256, 0.0);
    byte[][] y = outputs(pb, rnd);
    try (CudaWorld world = pb.open(); Engine eng = new Engine(pb, y, false)) {
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
      assertEquals(before[0], after, "seed " + seed + ": free device memory changed over 18 steady-state calls");
    }
  }

  @Test
  void badRoutingOnOneRankFailsEveryRankNamingIt() {
    var cfg = Reference.trivial(2, 2, 2, 128, 2, DType.BF16);
    Random rnd = new Random(1);
    try (CudaWorld world = CudaWorld.open(cfg.map(), cfg.comm())) {
      for (int[] bad : new int[][] {{0, 4, 1, 2}, {1, 1, 0, 2}, {0, -2, 1, 2}}) {
        List<String> msgs = messages(world, c -> {
          int[] idx = c.rank() == 1 ? bad : new int[] {0, 1, 2, 3};
          c.dispatch(RowBuffer.of(MemorySegment.ofArray(Reference.randomRows(rnd, 2 * 128, DType.BF16)), 2, 128, DType.BF16),
              new io.moeyard.dispatch.Routing(2, 2, idx, new float[] {1, 1, 1, 1}));
        });
        assertEquals(msgs.get(0), msgs.get(1));
        assertTrue(msgs.get(0).startsWith("dispatch: rank 1: "), msgs.get(0));
      }
      // NaN weight of a routed entry
      List<String> msgs = messages(world, c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(new byte[2 * 256]), 2, 128, DType.BF16),
          new io.moeyard.dispatch.Routing(2, 2, new int[] {0, 1, 2, 3}, new float[] {1, c.rank() == 0 ? Float.NaN : 1, 1, 1})));
      assertTrue(msgs.get(1).contains("rank 0: topkWeights[0][1] = NaN is not finite"), msgs.get(1));
      // a fitting call then works on the same world
      world.run(c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(new byte[2 * 256]), 2, 128, DType.BF16),
          new io.moeyard.dispatch.Routing(2, 2, new int[] {0, 1, 2, 3}, new float[] {1, 1, 1, 1})));
    }
  }

  @Test
  void moreRowsThanTheReceiveBufferFailsBeforeAnyKernelWrites() {
    ExpertMap map = ExpertMap.trivial(Topology.singleNode(2), 4);
    CommConfig comm = CommConfig.of(8, 128, 1, DType.BF16, DType.BF16).withReceiveRows(10);
    Random rnd = new Random(1);
    byte[] x = Reference.randomRows(rnd, 8 * 128, DType.BF16);
    try (CudaWorld world = CudaWorld.open(map, comm)) {
      List<String> msgs = messages(world, c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(x), 8, 128, DType.BF16),
          new io.moeyard.dispatch.Routing(8, 1, new int[8], Reference.randomWeights(rnd, 8))));
      assertEquals("dispatch: rank 0 would receive 16 rows, its receive buffer holds 10 (CommConfig.receiveRows)", msgs.get(0));
      assertEquals(msgs.get(0), msgs.get(1));
      int[] spread = {0, 1, 2, 3, 0, 1, 2, 3};
      List<Integer> rows = world.run(c -> c.dispatch(RowBuffer.of(MemorySegment.ofArray(x), 8, 128, DType.BF16),
          new io.moeyard.dispatch.Routing(8, 1, spread, Reference.randomWeights(rnd, 8))).receivedRows());
      assertEquals(List.of(8, 8), rows);
    }
  }

  @Test
  void misuseOfTheDevicePathFailsEveryRank() {
    var cfg = Reference.trivial(2, 2, 2, 128, 2, DType.BF16);
    Random rnd = new Random(2);
    var pb = Reference.routed(cfg, new int[] {4, 4}, (r, t, j) -> (t + j) % 4, rnd);
    byte[][] y = outputs(pb, rnd);
    try (CudaWorld world = pb.open(); CudaWorld other = pb.open(); Engine eng = new Engine(pb, y, false)) {
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
    long seed = TestSeed.fresh().value();
    Random rnd = new Random(seed);
    var pb = Reference.randomProblem(rnd, 4, 4, 3, 10, 3, 256, DType.BF16, 200, 0.05);
    byte[][] y = outputs(pb, rnd);
    byte[][] want = Reference.combine(pb, y);
    try (CudaWorld world = pb.open()) {
      List<byte[]> got = world.run(c -> {
        int r = c.rank();
        Dispatched d = c.dispatchAsync(pb.x(r), pb.routing(r)).join();
        RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[want[r].length]), pb.tokens()[r], pb.cfg().hidden(),
            pb.cfg().combineType());
        c.combineAsync(d, yRows(pb, y, r, d.receivedRows()), out).join();
        return out.segment().toArray(ValueLayout.JAVA_BYTE);
      });
      for (int r = 0; r < pb.ranks(); r++) assertArrayEquals(want[r], got.get(r), "seed " + seed + " rank " + r);
    }
  }

  /** Not a benchmark: checks that timings are reported, and prints them for the GPU run's log. */
  @Test
  void timingsAreReported() {
    Random rnd = new Random(TestSeed.fresh().value());
    var pb = Reference.randomProblem(rnd, 8, 8, 32, 256, 8, 7168, DType.BF16, 512, 0.0);
    byte[][] y = outputs(pb, rnd);
    try (CudaWorld world = pb.open(); Engine eng = new Engine(pb, y, false)) {
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
  }

  // ---------------------------------------------------------------------------------------------

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

  private static byte[][] outputs(Reference.Problem pb, Random rnd) {
    Reference.DispatchOut[] want = Reference.dispatch(pb);
    byte[][] y = new byte[pb.ranks()][];
    for (int d = 0; d < pb.ranks(); d++) {
      y[d] = Reference.randomRows(rnd, (long) want[d].rows() * pb.cfg().hidden(), pb.cfg().combineType());
    }
    return y;
  }

  private static RowBuffer yRows(Reference.Problem pb, byte[][] y, int d, int rows) {
    return RowBuffer.of(MemorySegment.ofArray(y[d]), rows, pb.cfg().hidden(), pb.cfg().combineType());
  }

  /** Both variants through the host path: dispatch and combine equal the reference, pair records too. */
  private static void check(Reference.Problem pb, Random rnd, String at0) {
    var c = pb.cfg();
    String ctx = at0 + " R=" + pb.ranks() + " S=" + c.slotsPerRank() + " K=" + c.topk() + " H=" + c.hidden() + " "
        + c.dispatchType() + " tokens=" + Arrays.toString(pb.tokens());
    Reference.DispatchOut[] want = Reference.dispatch(pb);
    byte[][] y = new byte[pb.ranks()][];
    for (int d = 0; d < pb.ranks(); d++) y[d] = Reference.randomRows(rnd, (long) want[d].rows() * c.hidden(), c.combineType());
    byte[][] wantOut = Reference.combine(pb, y);
    try (CudaWorld world = pb.open()) {
      for (CommConfig.Variant v : CommConfig.Variant.values()) {
        world.useVariant(v);
        world.run(comm -> {
          int d = comm.rank();
          String at = v + " rank " + d + " " + ctx;
          Dispatched got = comm.dispatch(pb.x(d), pb.routing(d));
          assertEquals(want[d].rows(), got.receivedRows(), "rows " + at);
          int[] counts = new int[c.slotsPerRank()];
          for (int e = 0; e < counts.length; e++) counts[e] = got.slotCount(e);
          assertArrayEquals(want[d].slotCounts(), counts, "slot counts " + at);
          RowBuffer recv = got.received();
          assertArrayEquals(want[d].recvX(), recv.segment().asSlice(recv.offset(), (long) got.receivedRows() * recv.rowBytes())
              .toArray(ValueLayout.JAVA_BYTE), "recvX " + at);
          float[] wts = new float[got.receivedRows()];
          for (int i = 0; i < wts.length; i++) wts[i] = got.receivedWeight(i);
          assertArrayEquals(want[d].recvW(), wts, "recvWeights " + at);
          if (c.scaleCols() > 0) {
            assertArrayEquals(want[d].recvScales(), recv.scales().asSlice(0, 4L * got.receivedRows() * c.scaleCols())
                .toArray(ValueLayout.JAVA_FLOAT), "recvScales " + at);
          }
          if (v == CommConfig.Variant.FUSED) {
            CudaRows rows = (CudaRows) got.rowsOf(comm);
            assertArrayEquals(want[d].pairSrc(), rows.pairSrc, "pair sources " + at);
            assertArrayEquals(want[d].pairToken(), rows.pairToken, "pair tokens " + at);
          }
          RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[wantOut[d].length]), pb.tokens()[d], c.hidden(),
              c.combineType());
          comm.combine(got, yRows(pb, y, d, got.receivedRows()), out);
          assertArrayEquals(wantOut[d], out.segment().toArray(ValueLayout.JAVA_BYTE), "combine " + at);
          return null;
        });
      }
    }
  }

  /** What an engine holds on the device for a problem: rows, routing, outputs, out, a stream per rank. */
  static final class Engine implements AutoCloseable {
    private final Reference.Problem pb;
    private final DeviceBuffer[] x;
    private final DeviceBuffer[] scales;
    private final DeviceBuffer[] idx;
    private final DeviceBuffer[] w;
    private final DeviceBuffer[] y;
    private final DeviceBuffer[] out;
    private final DeviceBuffer[] into;
    private final long[] streams;

    Engine(Reference.Problem pb, byte[][] yRows, boolean withInto) {
      this.pb = pb;
      int n = pb.ranks();
      var c = pb.cfg();
      x = new DeviceBuffer[n];
      scales = new DeviceBuffer[n];
      idx = new DeviceBuffer[n];
      w = new DeviceBuffer[n];
      y = new DeviceBuffer[n];
      out = new DeviceBuffer[n];
      into = new DeviceBuffer[n];
      streams = new long[n];
      for (int r = 0; r < n; r++) {
        x[r] = DeviceBuffer.allocate(pb.x()[r].length);
        x[r].upload(pb.x()[r]);
        if (c.scaleCols() > 0) {
          scales[r] = DeviceBuffer.allocate(4L * pb.scales()[r].length);
          scales[r].upload(pb.scales()[r]);
        }
        idx[r] = DeviceBuffer.allocate(4L * pb.topkIdx()[r].length);
        idx[r].upload(pb.topkIdx()[r]);
        w[r] = DeviceBuffer.allocate(4L * pb.topkW()[r].length);
        w[r].upload(pb.topkW()[r]);
        y[r] = DeviceBuffer.allocate(yRows[r].length);
        y[r].upload(yRows[r]);
        out[r] = DeviceBuffer.allocate((long) pb.tokens()[r] * c.combineRowBytes());
        out[r].fill(0x7f);
        if (withInto) {
          int rows = c.receiveRows();
          into[r] = DeviceBuffer.allocate((long) rows * c.rowBytes() + 4L * rows * c.scaleCols());
          into[r].fill(0x55);
        }
        streams[r] = NativeKernels.streamCreate();
      }
    }

    DeviceRows x(int r) {
      var c = pb.cfg();
      return new DeviceRows(x[r].address(), pb.tokens()[r], c.hidden(), c.dispatchType(),
          c.scaleCols() > 0 ? scales[r].address() : 0L);
    }

    DeviceRouting routing(int r) {
      return new DeviceRouting(idx[r].address(), w[r].address(), pb.tokens()[r], pb.cfg().topk());
    }

    DeviceRows y(int r, int rows) {
      return DeviceRows.of(y[r].address(), rows, pb.cfg().hidden(), pb.cfg().combineType());
    }

    DeviceRows out(int r) {
      return DeviceRows.of(out[r].address(), pb.tokens()[r], pb.cfg().hidden(), pb.cfg().combineType());
    }

    DeviceRows into(int r) {
      var c = pb.cfg();
      int rows = c.receiveRows();
      long a = into[r].address();
      return new DeviceRows(a, rows, c.hidden(), c.dispatchType(), c.scaleCols() > 0 ? a + (long) rows * c.rowBytes() : 0L);
    }

    CudaStream stream(int r) {
      return new CudaStream(streams[r]);
    }

    byte[] outBytes(int r) {
      NativeKernels.streamSynchronize(streams[r]);
      return out[r].downloadBytes(Math.toIntExact(out[r].byteSize()));
    }

    @Override
    public void close() {
      for (int r = 0; r < streams.length; r++) {
        if (streams[r] != 0) {
          NativeKernels.streamSynchronize(streams[r]);
          NativeKernels.streamDestroy(streams[r]);
        }
        for (DeviceBuffer b : new DeviceBuffer[] {x[r], scales[r], idx[r], w[r], y[r], out[r], into[r]}) {
          if (b != null) b.close();
        }
      }
    }
  }

  /** Received rows, FP8 scales, slot offsets and combine outputs per rank, as raw bytes. */
  private record Outputs(byte[][] recv, float[][] scales, int[][] slots, byte[][] out) {}

  /** The CPU communicator's outputs on a problem (ranks as threads of a CpuWorld). */
  private static final class Cpu {
    static Outputs run(Reference.Problem pb, byte[][] y) {
      var c = pb.cfg();
      int n = pb.ranks();
      Outputs o = new Outputs(new byte[n][], new float[n][], new int[n][], new byte[n][]);
      try (CpuWorld world = CpuWorld.create(c.map().topology())) {
        world.run(t -> {
          int r = t.rank();
          try (Communicator comm = Communicator.cpu(t, c.map(), c.comm())) {
            Dispatched d = comm.dispatch(pb.x(r), pb.routing(r));
            RowBuffer recv = d.received();
            o.recv()[r] = recv.segment().asSlice(recv.offset(), (long) d.receivedRows() * recv.rowBytes()).toArray(ValueLayout.JAVA_BYTE);
            o.scales()[r] = c.scaleCols() > 0
                ? recv.scales().asSlice(0, 4L * d.receivedRows() * c.scaleCols()).toArray(ValueLayout.JAVA_FLOAT) : new float[0];
            o.slots()[r] = slotOffsets(d);
            RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[pb.tokens()[r] * c.combineRowBytes()]), pb.tokens()[r],
                c.hidden(), c.combineType());
            comm.combine(d, yRows(pb, y, r, d.receivedRows()), out);
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
    static Outputs run(Reference.Problem pb, byte[][] y, CommConfig.Variant v, boolean withInto) {
      var c = pb.cfg();
      int n = pb.ranks();
      Outputs o = new Outputs(new byte[n][], new float[n][], new int[n][], new byte[n][]);
      try (CudaWorld world = pb.open(); Engine eng = new Engine(pb, y, withInto)) {
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
          o.scales()[r] = c.scaleCols() > 0
              ? recv.scales().asSlice(0, 4L * h.receivedRows() * c.scaleCols()).toArray(ValueLayout.JAVA_FLOAT) : new float[0];
          o.slots()[r] = slotOffsets(h);
          o.out()[r] = eng.outBytes(r);
          return null;
        });
      }
      return o;
    }
  }
}
