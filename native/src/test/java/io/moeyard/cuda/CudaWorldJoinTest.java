package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.CpuWorld;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaWorld#join} before any device memory: every rank gets the same error, naming the rank
 * at fault, and nothing waits. Ranks are threads with a process transport each (shared memory),
 * as the rank processes of an engine would be; the CUDA IPC path itself is
 * {@link CudaWorldProcessGpuTest}'s.
 */
class CudaWorldJoinTest {
  private static final CommConfig CONFIG = CommConfig.of(16, 128, 2, DType.BF16, DType.BF16);

  private static ExpertMap map(int ranks) {
    return ExpertMap.trivial(new Topology(1, ranks), 2 * ranks);
  }

  private static List<Object> join(int n, java.util.function.IntFunction<ExpertMap> maps,
      java.util.function.IntFunction<CommConfig> configs) throws Exception {
    return NativeTestSupport.ranks(n, r -> (w -> {
      try (ShmTransport t = ShmTransport.open(w, Duration.ofSeconds(10))) {
        try (CudaWorld world = CudaWorld.join(t, maps.apply(r), configs.apply(r))) {
          return world;
        }
      }
    }));
  }

  @Test
  void withoutCudaEveryRankSaysSo() throws Exception {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "CUDA is available here");
    List<Object> got = join(3, r -> map(3), r -> CONFIG);
    for (Object o : got) {
      CudaUnavailableException e = assertInstanceOf(CudaUnavailableException.class, o);
      assertEquals(CudaBackend.availability().message(), e.getMessage());
    }
  }

  /** Over the TCP store (ranks on any machines) the verdicts are the same. */
  @Test
  void overTheStoreEveryRankSaysSoToo() throws Exception {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "CUDA is available here");
    List<Object> got = NativeTestSupport.ranks(3, r -> (w -> {
      try (var t = io.moeyard.engine.rendezvous.StoreTransport.open(w);
          CudaWorld world = CudaWorld.join(t, map(3), CONFIG)) {
        return world;
      }
    }));
    for (Object o : got) assertEquals(CudaBackend.availability().message(), assertInstanceOf(CudaUnavailableException.class, o).getMessage());
  }

  /**
   * Over a cluster transport of two (pretend) machines the verdicts are the same, and so is bad
   * input: a node that spans machines is named before a missing GPU.
   */
  @Test
  void overAClusterTransportEveryRankSaysSoToo() throws Exception {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "CUDA is available here");
    List<Object> got = NativeTestSupport.ranks(4, r -> (w -> {
      try (var t = io.moeyard.engine.shm.ClusterTransport.open(w, Duration.ofSeconds(10), "pretend-" + r / 2);
          CudaWorld world = CudaWorld.join(t, ExpertMap.trivial(new Topology(2, 2), 8), CONFIG)) {
        return world;
      }
    }));
    for (Object o : got) assertEquals(CudaBackend.availability().message(), assertInstanceOf(CudaUnavailableException.class, o).getMessage());
    List<Object> spanning = NativeTestSupport.ranks(4, r -> (w -> {
      try (var t = io.moeyard.engine.shm.ClusterTransport.open(w, Duration.ofSeconds(10), "pretend-" + r / 2);
          CudaWorld world = CudaWorld.join(t, ExpertMap.trivial(new Topology(1, 4), 8), CONFIG, CudaWorld.DEFAULT_DEVICE_TIMEOUT,
              "pretend-" + r / 2, CudaWorld.HOST_LEG)) {
        return world;
      }
    }));
    for (Object o : spanning) {
      String m = assertInstanceOf(IllegalArgumentException.class, o).getMessage();
      assertTrue(m.contains("node 0 spans machines"), m);
    }
  }

  /** Bad input is named before a missing GPU, the same on every rank. */
  @Test
  void aRankWithAnotherMapOrConfigFailsEveryRankNamingIt() throws Exception {
    for (Object o : join(3, r -> map(r == 1 ? 4 : 3), r -> CONFIG)) {
      IllegalArgumentException e = assertInstanceOf(IllegalArgumentException.class, o);
      assertEquals("rank 1: the world has 3 ranks, the expert map 4", e.getMessage());
    }
    CommConfig wider = CommConfig.of(16, 256, 2, DType.BF16, DType.BF16);
    for (Object o : join(2, r -> map(2), r -> r == 1 ? wider : CONFIG)) {
      String m = assertInstanceOf(IllegalArgumentException.class, o).getMessage();
      assertTrue(m.startsWith("rank 1 joins with ") && m.contains("hidden=256") && m.contains("rank 0 with "), m);
    }
    CommConfig badTopk = CommConfig.of(16, 128, KernelShape.MAX_TOPK + 1, DType.BF16, DType.BF16);
    for (Object o : join(2, r -> map(2), r -> r == 0 ? badTopk : CONFIG)) {
      String m = assertInstanceOf(IllegalArgumentException.class, o).getMessage();
      assertTrue(m.startsWith("rank 0: "), m);
    }
  }

  /** Ranks on more than one machine: a node split between machines, or the direct path, is named on every rank. */
  @Test
  void ranksOnMoreThanOneMachineNeedWholeNodesAndTheRelay() throws Exception {
    ExpertMap twoNodes = ExpertMap.trivial(new Topology(2, 2), 8);
    // node 0 is ranks 0-1, node 1 ranks 2-3; rank 1 on machine b splits node 0
    for (Object o : join4(twoNodes, CONFIG, r -> r == 1 || r >= 2 ? "host-b" : "host-a")) {
      String m = assertInstanceOf(IllegalArgumentException.class, o).getMessage();
      assertTrue(m.startsWith("node 0 spans machines: rank 0 runs on host-a, rank 1 on host-b"), m);
    }
    for (Object o : join4(twoNodes, CONFIG.withNodePath(CommConfig.NodePath.DIRECT), r -> r < 2 ? "host-a" : "host-b")) {
      String m = assertInstanceOf(IllegalArgumentException.class, o).getMessage();
      assertTrue(m.startsWith("the ranks run on more than one machine") && m.contains("DIRECT"), m);
    }
    if (!CudaBackend.availability().available()) {
      // whole nodes on two machines, through the relay: accepted, so the missing GPU is what fails
      for (Object o : join4(twoNodes, CONFIG, r -> r < 2 ? "host-a" : "host-b")) {
        assertInstanceOf(CudaUnavailableException.class, o);
      }
    }
  }

  private static List<Object> join4(ExpertMap map, CommConfig config, java.util.function.IntFunction<String> machine)
      throws Exception {
    return NativeTestSupport.ranks(4, 2, r -> (w -> {
      try (ShmTransport t = ShmTransport.open(w, Duration.ofSeconds(10));
          CudaWorld world = CudaWorld.join(t, map, config, CudaWorld.DEFAULT_DEVICE_TIMEOUT, machine.apply(r), null)) {
        return world;
      }
    }));
  }

  @Test
  void ranksThatShareThisJvmAreSentToOpen() {
    try (CpuWorld w = CpuWorld.create(new Topology(1, 2), Duration.ofSeconds(10))) {
      List<Object> got = w.run(t -> {
        try {
          CudaWorld.join(t, map(2), CONFIG).close();
          return "joined";
        } catch (IllegalArgumentException e) {
          return e.getMessage();
        }
      });
      for (Object o : got) {
        assertTrue(((String) o).startsWith("rank 0: the transport's ranks share this JVM"), (String) o);
      }
    }
  }

  /** A transport that only groups its ranks into machines. */
  private static io.moeyard.engine.transport.Transport grouped(int... machineOf) {
    return new io.moeyard.engine.transport.Transport() {
      public int rank() { return 0; }
      public int size() { return machineOf.length; }
      public Topology topology() { return new Topology(1, machineOf.length); }
      public Object[] allGather(Object mine) { throw new UnsupportedOperationException(); }
      public void abort(Throwable cause) {}
      public boolean peerStores() { return false; }
      public int machineOf(int r) { return machineOf[r]; }
    };
  }

  /**
   * A machine barrier stands for a meeting about device events only where the transport's machine
   * holds every rank CUDA IPC reaches: the same machines, or coarser ones (the default, one
   * machine), never finer (pretend machines within one).
   */
  @Test
  void machineBarriersAreUsedOnlyWhereTheTransportsMachinesHoldTheRanksCudaReaches() {
    String[] two = {"a", "a", "b", "b"};
    assertTrue(CudaWorld.machineBarrierCovers(two, grouped(0, 0, 1, 1)));
    assertTrue(CudaWorld.machineBarrierCovers(two, grouped(5, 5, 2, 2)), "any names for the groups");
    assertTrue(CudaWorld.machineBarrierCovers(two, grouped(0, 0, 0, 0)), "a coarser grouping waits for more, never fewer");
    assertTrue(!CudaWorld.machineBarrierCovers(two, grouped(0, 1, 2, 2)), "a machine split in two");
    assertTrue(!CudaWorld.machineBarrierCovers(new String[] {"a", "a", "a", "a"}, grouped(0, 0, 1, 1)));
    assertTrue(!CudaWorld.machineBarrierCovers(new String[] {"a", "b", "a", "b"}, grouped(0, 1, 1, 0)));
    assertTrue(CudaWorld.machineBarrierCovers(new String[] {"a", "b", "a", "b"}, grouped(0, 1, 0, 1)));
  }

  /** The near channel is needed exactly where some machine holds ranks of two nodes. */
  @Test
  void nearMessagesOnlyWhereAMachineHoldsTwoNodes() {
    assertTrue(!CudaWorld.nodesShareMachines(new String[] {"a", "a", "b", "b"}, 2));
    assertTrue(CudaWorld.nodesShareMachines(new String[] {"a", "a", "a", "a", "b", "b"}, 2));
    assertTrue(CudaWorld.nodesShareMachines(new String[] {"a", "a", "b", "b", "a", "a"}, 2), "a machine's nodes need not be neighbours");
    assertTrue(!CudaWorld.nodesShareMachines(new String[] {"a", "b", "c"}, 1));
    assertTrue(CudaWorld.nodesShareMachines(new String[] {"a", "a"}, 1));
  }
}
