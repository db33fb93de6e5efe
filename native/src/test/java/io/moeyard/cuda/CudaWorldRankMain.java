package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.Arrivals;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Dispatched;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.rendezvous.StoreTransport;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.Transport;
import io.moeyard.testkit.Workload;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * One rank of {@link CudaWorldProcessGpuTest}, a process of its own (torchrun variables set): the
 * cuda communicator with one rank per process ({@link CudaWorld#join} over shared memory, peers'
 * device buffers through CUDA IPC). For each case (derived from the seed, the same in every
 * process: random dtype, map, top-k, hidden size, tokens per rank, some unrouted entries, and in
 * turn zero tokens on this world, top-1 with every token to one expert) it checks this rank's
 * results against the reference: both variants through the host path, the fused device path into
 * the engine's own rows with the device clock on, and a shuffled combine to random targets.
 * Prints {@code cuda-world rank R: ok, N cases} and exits 0; a mismatch or a failure is printed and
 * exits 1; without CUDA it says so after a barrier and exits 3.
 *
 * <p>Arguments: seed, cases; or seed, {@code die}: rank 1 leaves mid-call (below, {@link #die});
 * or seed, {@code machines}: each node a machine of its own ({@link #machinesCase}); or seed,
 * {@code machines-store}: the same with the host meetings through the TCP store
 * ({@link StoreTransport}, as between real machines) instead of shared memory; or seed,
 * {@code machines-cluster}: the same with a {@link ClusterTransport} grouping the ranks by the
 * pretend machines (its machine barriers wait for one pretend machine); or seed,
 * {@code machines-cluster-two-nodes}: the same with two nodes on each pretend machine (messages
 * between them on the near channel, peer copies; a machine barrier waits for both nodes); or seed,
 * {@code machines-nccl}: the same over a {@link ClusterTransport} of the pretend machines with the
 * messages between them on NCCL (the leg a world of real machines takes), which takes several ranks of one GPU
 * only where NCCL allows it ({@code NCCL_MULTI_RANK_GPU_ENABLE=1}, NCCL 2.30): where its set-up
 * refuses, every rank prints {@value #NCCL_REFUSED} and NCCL's reason and exits 0.
 */
public final class CudaWorldRankMain {
  private CudaWorldRankMain() {}

  /** What a rank of {@code machines-nccl} prints when NCCL's set-up refused the world. */
  static final String NCCL_REFUSED = "NCCL refused the world: ";

  /** The device timeout of {@code machines-nccl}: NCCL's waits end well within the test's bound. */
  static final java.time.Duration NCCL_TIMEOUT = java.time.Duration.ofSeconds(20);

  public static void main(String[] args) {
    long seed = Long.parseLong(args[0]);
    boolean overStore = args[1].equals("machines-store");
    boolean overNcclLeg = args[1].equals("machines-nccl");
    // NCCL between pretend machines meets over a cluster transport of them, as real machines would
    boolean overCluster = args[1].startsWith("machines-cluster") || overNcclLeg;
    int nodesPerMachine = args[1].equals("machines-cluster-two-nodes") ? 2 : 1;
    boolean overNccl = overNcclLeg;
    int cases = args[1].equals("die") || args[1].startsWith("machines") ? 0 : Integer.parseInt(args[1]);
    String verdict;
    int me = -1;
    // the probe first: CUDA's start-up must not eat the rendezvous's timeout
    CudaAvailability cuda = CudaAvailability.get();
    Map<String, String> agreed = Map.of("test", "cuda-world", "seed", Long.toString(seed));
    try (ShmTransport shm = overStore || overCluster ? null : ShmTransport.join(agreed);
        StoreTransport store = overStore ? StoreTransport.join(agreed) : null;
        ClusterTransport cluster = overCluster ? clusterOfPretendMachines(agreed, nodesPerMachine) : null) {
      Transport t = overStore ? store : overCluster ? cluster : shm;
      me = t.rank();
      if (!cuda.available()) {
        t.barrier();
        System.out.println("cuda-world rank " + me + ": " + cuda.reason());
        System.out.flush();
        System.exit(3);
        return;
      }
      if (args[1].equals("die")) {
        verdict = die(shm, seed);
      } else if (args[1].startsWith("machines")) {
        for (int i = 0; i < 4; i++) machinesCase(t, seed, i, overNccl, nodesPerMachine);
        verdict = "ok, 4 cases as machines" + (overStore ? " over the store" : overNccl ? " over NCCL and the cluster transport"
            : overCluster ? " over the cluster transport, " + nodesPerMachine + " node(s) per machine" : "");
      } else {
        for (int i = 0; i < cases; i++) runCase(shm, seed, i);
        verdict = "ok, " + cases + " cases";
      }
    } catch (Throwable e) {
      java.io.StringWriter sw = new java.io.StringWriter();
      e.printStackTrace(new java.io.PrintWriter(sw));
      verdict = overNccl && refusedByNccl(e) ? NCCL_REFUSED + e.getMessage() : sw.toString();
    }
    System.out.println("cuda-world rank " + me + ": " + verdict);
    System.out.flush();
    System.exit(verdict.startsWith("ok") || verdict.startsWith(NCCL_REFUSED) ? 0 : 1);
  }

  /**
   * The host meetings of {@code machines-cluster}: a {@link ClusterTransport} whose machines are the
   * pretend ones {@link #machinesCase} gives the world, so that its meetings about device events
   * are machine barriers that wait for one pretend machine only.
   */
  private static ClusterTransport clusterOfPretendMachines(Map<String, String> agreed, int nodesPerMachine) {
    RankEnv env = RankEnv.fromEnv();
    return ClusterTransport.join(env, agreed, ProcessWorld.DEFAULT_TIMEOUT,
        pretendMachine(env.rank(), env.localWorldSize(), nodesPerMachine));
  }

  /** The pretend machine of {@code rank}: {@code nodesPerMachine} nodes of {@code localRanks} ranks each. */
  static String pretendMachine(int rank, int localRanks, int nodesPerMachine) {
    return "pretend-machine-" + rank / (localRanks * nodesPerMachine);
  }

  private static void runCase(ShmTransport t, long seed, int i) {
    int n = t.size();
    int me = t.rank();
    SplittableRandom rnd = new SplittableRandom(seed * 31 + i);
    DType dt = DType.values()[rnd.nextInt(DType.values().length)];
    int s = 1 + rnd.nextInt(3);
    int experts = 1 + rnd.nextInt(n * s);
    int k = 1 + rnd.nextInt(Math.min(experts, 8));
    int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(2)) : 8 + rnd.nextInt(400);
    int maxTokens = 150;
    int kind = i % 4;
    Workload wl = switch (kind) {
      case 1 -> KernelCases.random(rnd, n, t.topology().localRanks(), s, experts, k, hidden, dt, 0, 0); // no tokens at all
      case 2 -> {
        // top-1, every token to expert 0: one rank receives everything, the others nothing
        Workload base = KernelCases.random(rnd, n, t.topology().localRanks(), s, experts, 1, hidden, dt, maxTokens, 0);
        int[][] idx = new int[n][];
        for (int r = 0; r < n; r++) idx[r] = new int[base.tokens[r]];
        yield Workload.of(base.map, 1, hidden, dt, base.tokens, idx, rnd.nextLong());
      }
      default -> KernelCases.random(rnd, n, t.topology().localRanks(), s, experts, k, hidden, dt, maxTokens, 0.1);
    };
    KernelShape shape = KernelCases.shape(wl, maxTokens);
    String ctx = "case " + i + " " + wl;
    KernelCases.Expected[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    try (CudaWorld world = CudaWorld.join(t, shape.map(), shape.comm())) {
      abortingOnFailure(t, () -> {
        CudaCommunicator c = world.communicator();
        assertEquals(me, c.rank());
        for (CommConfig.Variant v : CommConfig.Variant.values()) {
          world.useVariant(v);
          CudaWorldGpuTest.checkRank(c, wl, shape, want, wantOut, v, ctx);
        }
        devicePath(world, c, wl, want, wantOut, ctx);
        shuffled(c, wl, wantOut, seed * 131 + i, ctx);
      });
    }
  }

  /**
   * {@code body}, and should it fail on this rank (an assertion), the peers hear of it at once:
   * otherwise the world's closing barrier, which this rank reaches next, would meet the peers'
   * next collective.
   */
  private static void abortingOnFailure(Transport t, Runnable body) {
    try {
      body.run();
    } catch (RuntimeException | Error e) {
      t.abort(e);
      throw e;
    }
  }

  /**
   * NCCL's set-up failed (on this rank, or on a peer whose abort reached this one): the world was
   * refused, which on one GPU says nothing of our code.
   */
  private static boolean refusedByNccl(Throwable e) {
    for (Throwable c = e; c != null; c = c.getCause()) {
      if (c.getMessage() != null && c.getMessage().contains("ncclCommInitRankConfig")) return true;
    }
    return false;
  }

  /**
   * Case i with every node pretending to be a machine of its own: nothing is mapped between
   * nodes, and the node-level path's messages between them go through host memory and the
   * transport (the stand-in for NCCL, which takes two ranks of one GPU only where it is told to),
   * or with {@code overNccl} on NCCL itself. The fused variant on the host path and on the device
   * path, and the unfused one on the host path, against the reference.
   */
  private static void machinesCase(Transport t, long seed, int i, boolean overNccl, int nodesPerMachine) {
    int n = t.size();
    int me = t.rank();
    int local = t.topology().localRanks();
    SplittableRandom rnd = new SplittableRandom(seed * 37 + i);
    DType dt = DType.values()[rnd.nextInt(DType.values().length)];
    int s = 1 + rnd.nextInt(3);
    int experts = 1 + rnd.nextInt(n * s);
    int k = 1 + rnd.nextInt(Math.min(experts, 8));
    int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK : 8 + rnd.nextInt(300);
    Workload wl = KernelCases.random(rnd, n, local, s, experts, k, hidden, dt, i == 1 ? 0 : 120, 0.1);
    KernelShape shape = KernelCases.shape(wl, 120);
    String ctx = "machines case " + i + " " + wl;
    KernelCases.Expected[] want = KernelCases.dispatch(wl);
    byte[][] wantOut = KernelCases.combine(wl);
    try (CudaWorld world = CudaWorld.join(t, shape.map(), shape.comm(), overNccl ? NCCL_TIMEOUT : CudaWorld.DEFAULT_DEVICE_TIMEOUT,
        pretendMachine(me, local, nodesPerMachine), overNccl ? null : CudaWorld.HOST_LEG)) {
      abortingOnFailure(t, () -> {
        // what these modes are for: the meetings about device events are machine barriers (over a
        // ClusterTransport they wait for one pretend machine; the other transports' are the
        // world's), and the near channel runs exactly where a pretend machine holds two nodes.
        // Without these a case would pass on world barriers and never exercise them.
        int perMachine = local * nodesPerMachine;
        assertTrue(world.machineMeetings, "meetings about device events are machine barriers, " + ctx);
        assertEquals(nodesPerMachine > 1, world.nearMessages, "messages between nodes of one pretend machine, " + ctx);
        if (t instanceof ClusterTransport ct) {
          assertEquals(n / perMachine, ct.machines(), "the cluster transport's machines are the pretend ones, " + ctx);
          assertEquals(me / perMachine, ct.machineOf(me), ctx);
        }
        CudaCommunicator c = world.communicator();
        world.useVariant(CommConfig.Variant.FUSED);
        CudaWorldGpuTest.checkRank(c, wl, shape, want, wantOut, CommConfig.Variant.FUSED, ctx);
        try (DeviceWorkload dw = new DeviceWorkload(wl, 0, me)) {
          DeviceDispatched d = c.dispatch(dw.x(me), dw.routing(me), dw.stream(me));
          c.combine(d, dw.y(me, d.receivedRows()), dw.out(me), dw.stream(me));
          assertArrayEquals(wantOut[me], dw.outBytes(me), "device-path combine, rank " + me + " " + ctx);
          // timed, each pretend machine on its own clock (its first rank's): the same bits, and a
          // time on every machine's clock rank
          world.timing(true);
          try {
            assertEquals(me / perMachine * perMachine, world.clockRank(), "each machine's first rank keeps its clock, " + ctx);
            DeviceDispatched td = c.dispatch(dw.x(me), dw.routing(me), dw.stream(me));
            float dispatchMs = me == world.clockRank() ? world.lastDeviceMs() : 0f;
            c.combine(td, dw.y(me, td.receivedRows()), dw.out(me), dw.stream(me));
            assertArrayEquals(wantOut[me], dw.outBytes(me), "timed device-path combine, rank " + me + " " + ctx);
            if (me == world.clockRank()) {
              float combineMs = world.lastDeviceMs();
              assertTrue(dispatchMs > 0 && combineMs > 0, "machine clock of rank " + me + ": " + dispatchMs + " / " + combineMs + " ms, " + ctx);
            }
          } finally {
            world.timing(false);
          }
        }
        // the unfused baseline: its blocks for the other machine cross on the channel too
        world.useVariant(CommConfig.Variant.UNFUSED);
        CudaWorldGpuTest.checkRank(c, wl, shape, want, wantOut, CommConfig.Variant.UNFUSED, ctx);
        // the shuffled combine: homes send the rows of targets on other pretend machines
        world.useVariant(CommConfig.Variant.FUSED);
        shuffled(c, wl, wantOut, seed * 131 + i, ctx);
      });
    }
  }

  /** The device timeout of {@link #die}: short, so that the test does not wait for the default's minute. */
  static final java.time.Duration DIE_TIMEOUT = java.time.Duration.ofSeconds(5);

  /**
   * A peer process that dies mid-call must not hang the others. Every rank dispatches and starts a
   * combine on the device path; rank 1's engine stream is first held busy for 8 s (longer than the 5 s device timeout), so its part of
   * the combine (and the events its peers' streams wait for) is still queued when it halts. The
   * others then wait for their own streams ({@code download}), which wait for rank 1's events: they
   * must return well within the device timeout, either failing naming rank 1 (the transport's check
   * finds its process gone: a timeout naming it, or the abort of the peer that found it first; or,
   * should the check miss it, the device timeout naming it) or having found the events released by
   * the driver. Prints which.
   */
  private static String die(ShmTransport t, long seed) {
    int n = t.size();
    int me = t.rank();
    SplittableRandom rnd = new SplittableRandom(seed);
    Workload wl = KernelCases.random(rnd, n, t.topology().localRanks(), 2, 2 * n, 2, 256, DType.BF16, 64, 0);
    KernelShape shape = KernelCases.shape(wl, 64);
    try (CudaWorld world = CudaWorld.join(t, shape.map(), shape.comm(), DIE_TIMEOUT);
        DeviceWorkload dw = new DeviceWorkload(wl, 0, me)) {
      CudaCommunicator c = world.communicator();
      DeviceDispatched d = c.dispatch(dw.x(me), dw.routing(me), dw.stream(me));
      if (me == 1) NativeKernels.hold(8_000_000_000L, dw.stream(me).handle());
      c.combine(d, dw.y(me, d.receivedRows()), dw.out(me), dw.stream(me));
      if (me == 1) {
        System.out.println("cuda-world rank 1: leaving mid-call");
        System.out.flush();
        Runtime.getRuntime().halt(0);
      }
      long t0 = System.nanoTime();
      String how;
      try {
        c.download(d);
        how = "its stream finished (the driver released the dead peer's events)";
      } catch (io.moeyard.engine.CollectiveTimeoutException e) {
        if (!e.missingRanks().contains(1)) throw new AssertionError("the timeout names " + e.missingRanks() + ": " + e.getMessage());
        how = "failed naming rank 1: " + e.getMessage();
      } catch (io.moeyard.engine.CollectiveException e) {
        // the other survivor found rank 1 first and aborted the world, naming it
        if (!e.getMessage().contains("rank 1 (pid")) throw new AssertionError("the abort does not name rank 1: " + e.getMessage());
        how = "failed with the abort naming rank 1: " + e.getMessage();
      }
      long ms = (System.nanoTime() - t0) / 1_000_000;
      if (ms > DIE_TIMEOUT.toMillis() + 5_000) throw new AssertionError("the wait took " + ms + " ms");
      System.out.println("cuda-world rank " + me + ": after " + ms + " ms " + how);
      System.out.flush();
      // the world cannot close cleanly (rank 1 is gone and never unmaps); leave without it
      Runtime.getRuntime().halt(0);
      return "unreachable";
    }
  }

  /** The fused device path into the engine's rows (a local copy of this rank's receive rows), timed. */
  private static void devicePath(CudaWorld world, CudaCommunicator c, Workload wl, KernelCases.Expected[] want,
      byte[][] wantOut, String ctx) {
    int me = c.rank();
    world.useVariant(CommConfig.Variant.FUSED);
    world.timing(true);
    try (DeviceWorkload dw = new DeviceWorkload(wl, Math.max(1, want[me].rows()), me)) {
      DeviceDispatched d = c.dispatch(dw.x(me), dw.routing(me), dw.into(me), dw.stream(me));
      c.combine(d, dw.y(me, d.receivedRows()), dw.out(me), dw.stream(me));
      assertArrayEquals(wantOut[me], dw.outBytes(me), "device-path combine, rank " + me + " " + ctx);
      Dispatched host = c.download(d);
      RowBuffer recv = host.received();
      assertArrayEquals(want[me].recvX(), recv.segment().asSlice(recv.offset(), (long) host.receivedRows() * recv.rowBytes())
          .toArray(ValueLayout.JAVA_BYTE), "device-path rows in the engine's buffer, rank " + me + " " + ctx);
      if (me == 0) {
        float ms = world.lastDeviceMs();
        if (!(ms >= 0)) throw new AssertionError("the device clock read " + ms + " ms " + ctx);
      }
    } finally {
      world.timing(false);
    }
  }

  /** Every token's combined row reaches its random target (drawn from {@code seed} by every process alike). */
  private static void shuffled(CudaCommunicator c, Workload wl, byte[][] wantOut, long seed, String ctx) {
    int n = wl.ranks();
    int me = c.rank();
    SplittableRandom rnd = new SplittableRandom(seed);
    int[][] next = new int[n][];
    int arriving = 0;
    for (int r = 0; r < n; r++) {
      next[r] = new int[wl.tokens[r]];
      for (int t = 0; t < next[r].length; t++) {
        next[r][t] = rnd.nextInt(n);
        if (next[r][t] == me) arriving++;
      }
    }
    long rowBytes = wl.outRowBytes();
    RowBuffer into = RowBuffer.of(MemorySegment.ofArray(new byte[(int) (Math.max(1, arriving) * rowBytes)]),
        Math.max(1, arriving), wl.hidden, wl.outType);
    Dispatched d = c.dispatch(wl.x(me), wl.routing(me));
    Arrivals a = c.combineShuffled(d, CudaWorldGpuTest.yRows(wl, me, d.receivedRows()), next[me], into);
    CudaWorldGpuTest.checkArrivals(a, into, me, next, arriving, wantOut, rowBytes, ctx);
  }
}
