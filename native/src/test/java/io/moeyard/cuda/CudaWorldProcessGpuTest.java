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
}
