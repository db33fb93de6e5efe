package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The cuda communicator with one rank per process: child JVMs, one per rank, on the one GPU
 * ({@link CudaWorldRankMain}), each joining through shared memory and CUDA IPC and checking its
 * results against the reference on random cases. Skipped where CUDA IPC is unavailable (here: no
 * driver). Tagged {@code gpu-step}: on the GPU machine it runs in the cuda-ipc step of
 * bench/gpu/run.sh ({@code GpuTestMain --class}).
 */
@Tag(GpuTestMain.OWN_STEP)
class CudaWorldProcessGpuTest {

  @BeforeEach
  void ipc() {
    NativeTestSupport.requireGpu();
    CudaIpc.Availability a = CudaIpc.availability();
    Assumptions.assumeTrue(a.available(), a::message);
  }

  @ParameterizedTest(name = "{0} processes, {1} per node")
  @CsvSource({"2, 2", "3, 3", "4, 2"})
  void rankProcessesMatchTheReference(int n, int perNode) throws Exception {
    long seed = TestSeed.fresh().value();
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(n, perNode, CudaWorldRankMain.class.getName(),
        Long.toString(seed), "4");
    String all = CudaIpcGpuTest.finish(ranks, 150);
    for (int r = 0; r < n; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
      assertTrue(ranks.get(r).text().contains("cuda-world rank " + r + ": ok"), all);
    }
  }

  /**
   * Four rank processes as two pretend machines of one node each (nothing mapped between them,
   * the node-level path's messages through host staging), the host meetings through shared
   * memory or through the TCP store as between real machines: every rank matches the reference,
   * for the fused and the unfused variant (whose blocks for the other machine cross on the channel).
   */
  @ParameterizedTest(name = "host meetings over {0}")
  @org.junit.jupiter.params.provider.ValueSource(strings = {"machines", "machines-store", "machines-cluster"})
  void twoPretendMachinesMatchTheReference(String mode) throws Exception {
    long seed = TestSeed.fresh().value();
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(4, 2, CudaWorldRankMain.class.getName(), Long.toString(seed), mode);
    String all = CudaIpcGpuTest.finish(ranks, 150);
    for (int r = 0; r < 4; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
      assertTrue(ranks.get(r).text().contains("cuda-world rank " + r + ": ok"), all);
    }
  }

  /**
   * Four rank processes, a node each, as two pretend machines of two nodes, the host meetings
   * through a {@link io.moeyard.engine.shm.ClusterTransport} of those machines: the messages between
   * the nodes of one machine take the near channel (peer copies), the others host staging, and
   * a meeting about device events is a machine barrier that must wait for both nodes of a
   * machine (a node's barrier would not). Every rank matches the reference.
   */
  @org.junit.jupiter.api.Test
  void twoPretendMachinesOfTwoNodesMatchTheReference() throws Exception {
    long seed = TestSeed.fresh().value();
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(4, 1, CudaWorldRankMain.class.getName(), Long.toString(seed),
        "machines-cluster-two-nodes");
    String all = CudaIpcGpuTest.finish(ranks, 150);
    for (int r = 0; r < 4; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
      assertTrue(ranks.get(r).text().contains("cuda-world rank " + r + ": ok"), all);
    }
  }

  /**
   * Rank 1 of 3 halts with its part of a combine still queued: ranks 0 and 2 come back (they print
   * whether they failed naming rank 1, found by the transport's check or at the device timeout, or
   * the driver released its events), and nothing hangs.
   */
  @org.junit.jupiter.api.Test
  void aRankProcessThatDiesMidCallHangsNobody() throws Exception {
    long seed = TestSeed.fresh().value();
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(3, 3, CudaWorldRankMain.class.getName(), Long.toString(seed), "die");
    String all = CudaIpcGpuTest.finish(ranks, 60);
    System.out.println(all);
    assertTrue(ranks.get(1).text().contains("cuda-world rank 1: leaving mid-call"), all);
    for (int r : new int[] {0, 2}) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " (seed " + seed + "):\n" + all);
      assertTrue(ranks.get(r).text().matches("(?s).*cuda-world rank " + r + ": after \\d+ ms .*"), all);
    }
  }
}
