package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.NaiveReference;
import io.moeyard.testkit.Workload;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The node-level (two-hop) path of the cuda backend on the GPU (virtual ranks of several nodes on
 * one device, the cross-node leg through {@link PeerCopyChannel}): on random multi-node workloads
 * its windows (rows, weights, FP8 scales, pair records) and combine outputs equal the kit's naive
 * reference, the single-hop path ({@code NodePath.DIRECT}) and the CPU communicator's node relay,
 * bit for bit, through the host path and the device path; rows sent across nodes are counted per
 * path; steady-state calls allocate nothing. Skipped with "CUDA backend unavailable: &lt;reason&gt;"
 * where there is no GPU (here, CI). The host-side checks of the same code are {@link RelayHostTest}.
 */
class RelayGpuTest {

  @BeforeEach
  void gpu() {
    NativeTestSupport.requireGpu();
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void relayMatchesTheReferenceAndTheDirectPath(DType dtype) {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 8; iter++) {
        int nodes = 2 + rnd.nextInt(3);
        int local = 1 + rnd.nextInt(4);
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(nodes * local * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 8));
        int hidden = dtype == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(3))
            : new int[] {128, 256, 7 * 128, 100, 36, 33}[rnd.nextInt(6)];
        Workload wl = KernelCases.random(rnd, nodes * local, local, s, experts, k, hidden, dtype, 300, 0.1);
        check(wl, 300, "iter " + iter);
      }
    });
  }

  /** The kit's own random workloads, those with more than one node. */
  @Test
  void kitRandomWorkloadsOnNodes() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      int done = 0;
      for (int iter = 0; done < 8 && iter < 200; iter++) {
        Workload wl = Workload.random(seed.value() + iter, 64);
        if (wl.map.topology().nodes() < 2) continue;
        check(wl, wl.maxTokens(), "case " + iter);
        done++;
      }
      assertTrue(done > 0, "no multi-node workload drawn");
    });
  }

  /**
   * Zero tokens everywhere, a rank with zero tokens, top-1, every entry -1, every token to one
   * expert (one node receives everything, the others send it all), a node nobody sends to (no
   * message crosses to it), 64 ranks as 64 nodes of one rank.
   */
  @Test
  void edgeCases() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      check(KernelCases.random(rnd, 4, 2, 2, 8, 2, 128, DType.BF16, 0, 0.0), 0, "zero tokens");
      KernelShape cfg = KernelCases.trivial(6, 2, 2, 256, 2, DType.FP16);
      check(KernelCases.routed(cfg, new int[] {0, 40, 3, 0, 17, 9}, (r, t, j) -> (7 * t + j + r) % 12, rnd.nextLong()), 64,
          "ranks with zero tokens");
      check(KernelCases.random(rnd, 8, 2, 2, 16, 1, 256, DType.BF16, 200, 0.0), 200, "top-1");
      check(KernelCases.random(rnd, 4, 2, 2, 8, 3, 128, DType.FP32, 50, 1.0), 50, "all -1");
      KernelShape one = KernelCases.trivial(6, 3, 2, 128, 1, DType.BF16);
      check(KernelCases.routed(one, new int[] {70, 0, 5, 64, 1, 9}, (r, t, j) -> 0, rnd.nextLong()), 70, "all to expert 0");
      // experts of node 1 (ranks 2, 3: slots 4..7) never chosen
      KernelShape quiet = KernelCases.trivial(6, 2, 2, 256, 2, DType.BF16);
      int[] live = {0, 1, 2, 3, 8, 9, 10, 11};
      check(KernelCases.routed(quiet, new int[] {30, 31, 7, 0, 12, 20}, (r, t, j) -> live[(t + 3 * j + r) % 8], rnd.nextLong()), 31,
          "node 1 receives nothing");
      check(KernelCases.random(rnd, 64, 1, 1, 64, 4, 128, DType.BF16, 20, 0.0), 20, "64 nodes");
    });
  }

  /**
   * The device path (engine memory, an engine stream per rank, the engine's receive rows on odd
   * iterations) on the node relay equals the CPU communicator's node relay; steady-state calls
   * allocate no device memory.
   */
  @Test
  void devicePathMatchesTheCpuRelay() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 6; iter++) {
        DType dt = DType.values()[rnd.nextInt(DType.values().length)];
        int nodes = 2 + rnd.nextInt(2);
        int local = 1 + rnd.nextInt(3);
        int s = 1 + rnd.nextInt(3);
        int experts = 1 + rnd.nextInt(nodes * local * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 6));
        int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK : 8 + rnd.nextInt(300);
        Workload wl = KernelCases.random(rnd, nodes * local, local, s, experts, k, hidden, dt, 200, 0.1);
        KernelShape shape = KernelCases.shape(wl, 200);
        boolean withInto = iter % 2 == 1;
        String at = "iter " + iter + " " + wl;
        byte[][] cpu = cpuOut(wl, shape);
        try (CudaWorld world = open(shape); DeviceWorkload eng = new DeviceWorkload(wl, withInto ? shape.receiveRows() : 0)) {
          long[] before = new long[1];
          world.run(c -> {
            int r = c.rank();
            for (int i = 0; i < 4; i++) {
              if (i == 2 && r == 0) before[0] = CudaWorld.deviceMemory()[0];
              DeviceDispatched d = withInto ? c.dispatch(eng.x(r), eng.routing(r), eng.into(r), eng.stream(r))
                  : c.dispatch(eng.x(r), eng.routing(r), eng.stream(r));
              c.combine(d, eng.y(r, d.receivedRows()), eng.out(r), eng.stream(r));
              assertArrayEquals(cpu[r], eng.outBytes(r), "combine of rank " + r + " call " + i + " " + at);
            }
            return null;
          });
          assertEquals(before[0], CudaWorld.deviceMemory()[0], "free device memory changed over steady-state calls " + at);
        }
      }
    });
  }

  /** Switching the world to the unfused baseline and back between calls: each call takes its path, same bits. */
  @Test
  void variantSwitchesBetweenCalls() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      Workload wl = KernelCases.random(seed.random(), 6, 3, 2, 12, 3, 256, DType.BF16, 100, 0.05);
      byte[][] want = KernelCases.combine(wl);
      try (CudaWorld world = open(KernelCases.shape(wl, 100))) {
        for (CommConfig.Variant v : new CommConfig.Variant[] {CommConfig.Variant.FUSED, CommConfig.Variant.UNFUSED,
            CommConfig.Variant.FUSED}) {
          world.useVariant(v);
          List<byte[]> got = world.run(c -> combineOnHost(c, wl));
          for (int r = 0; r < wl.ranks(); r++) assertArrayEquals(want[r], got.get(r), v + " rank " + r + " " + wl);
        }
      }
    });
  }

  /**
   * Not a benchmark: both node paths on 2 nodes x 4 ranks (a DeepSeek-like layer, 512 tokens per
   * rank) under the CUDA-event clock, printed for the GPU run's log; only checks that times come back.
   */
  @Test
  void timingsOfBothNodePathsAreReported() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      Workload wl = KernelCases.random(seed.random(), 8, 4, 32, 256, 8, 7168, DType.BF16, 512, 0.0);
      KernelShape relay = KernelCases.shape(wl, 512);
      for (KernelShape shape : new KernelShape[] {relay,
          KernelShape.of(relay.map(), relay.comm().withNodePath(CommConfig.NodePath.DIRECT))}) {
        try (CudaWorld world = open(shape); DeviceWorkload eng = new DeviceWorkload(wl, 0)) {
          world.timing(true);
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
          java.util.Arrays.sort(ms[0]);
          java.util.Arrays.sort(ms[1]);
          assertTrue(ms[0][3] > 0 && ms[1][3] > 0, shape.comm().nodePath() + " timings " + ms[0][3] + " / " + ms[1][3]);
          System.out.printf("timing 2 nodes x 4 ranks, node path %s: dispatch %.3f ms, combine %.3f ms (median of 7, %d short holds)%n",
              shape.comm().nodePath(), ms[0][3], ms[1][3], world.shortHolds());
        }
      }
    });
  }

  // ---------------------------------------------------------------------------------------------

  private static CudaWorld open(KernelShape shape) {
    return CudaWorld.open(shape.map(), shape.comm());
  }

  private static byte[] combineOnHost(CudaCommunicator c, Workload wl) {
    int r = c.rank();
    Dispatched d = c.dispatch(wl.x(r), wl.routing(r));
    RowBuffer out = RowBuffer.of(MemorySegment.ofArray(new byte[wl.tokens[r] * wl.hidden * wl.outType.bytes()]), wl.tokens[r],
        wl.hidden, wl.outType);
    c.combine(d, RowBuffer.of(MemorySegment.ofArray(wl.y[r]), d.receivedRows(), wl.hidden, wl.outType), out);
    return out.segment().toArray(ValueLayout.JAVA_BYTE);
  }

  /** The CPU communicator's combine outputs (its node relay, the default) per rank. */
  private static byte[][] cpuOut(Workload wl, KernelShape shape) {
    byte[][] out = new byte[wl.ranks()][];
    try (CpuWorld world = CpuWorld.create(shape.map().topology())) {
      world.run(t -> {
        try (Communicator comm = Communicator.cpu(t, shape.map(), shape.comm())) {
          int r = t.rank();
          Dispatched d = comm.dispatch(wl.x(r), wl.routing(r));
          RowBuffer o = RowBuffer.of(MemorySegment.ofArray(new byte[wl.tokens[r] * shape.combineRowBytes()]), wl.tokens[r],
              wl.hidden, wl.outType);
          comm.combine(d, RowBuffer.of(MemorySegment.ofArray(wl.y[r]), d.receivedRows(), wl.hidden, wl.outType), o);
          out[r] = o.segment().toArray(ValueLayout.JAVA_BYTE);
        }
        return null;
      });
    }
    return out;
  }

  /** Rows rank r sends across nodes: through the relay, one per (token, remote node); direct, one per remote pair. */
  private static int crossings(NaiveReference ref, int r, int tokens, int local, boolean relay) {
    int n = 0;
    for (int t = 0; t < tokens; t++) {
      boolean[] node = new boolean[64];
      for (int d : ref.destinations(r, t)) {
        if (d / local == r / local) continue;
        if (relay && node[d / local]) continue;
        node[d / local] = true;
        n++;
      }
    }
    return n;
  }

  /**
   * Through the host path, on the node relay and on the single-hop path: every window entry and
   * every combine output equal the reference; rows sent across nodes as each path sends them.
   */
  private static void check(Workload wl, int maxTokens, String what) {
    KernelShape relay = KernelCases.shape(wl, maxTokens);
    assertEquals(CommConfig.NodePath.RELAY, relay.comm().nodePath(), "the default node path");
    assertTrue(relay.localRanks() < relay.ranks(), "more than one node: " + wl);
    KernelShape direct = KernelShape.of(relay.map(), relay.comm().withNodePath(CommConfig.NodePath.DIRECT));
    String ctx = what + " " + wl;
    KernelCases.Expected[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    int local = relay.localRanks();
    for (KernelShape shape : new KernelShape[] {relay, direct}) {
      boolean relaying = shape == relay;
      try (CudaWorld world = open(shape)) {
        // twice: the second call reuses every buffer the first one filled
        for (int call = 0; call < 2; call++) {
          int c = call;
          world.run(comm -> {
            int d = comm.rank();
            String at = shape.comm().nodePath() + " call " + c + " " + ctx;
            Dispatched got = CudaWorldGpuTest.checkRank(comm, wl, shape, want, wantOut, CommConfig.Variant.FUSED, at);
            assertEquals(crossings(wl.ref, d, wl.tokens[d], local, relaying), got.rowsSentAcrossNodes(),
                "rows across nodes, rank " + d + " " + at);
            return null;
          });
        }
      }
    }
  }
}
