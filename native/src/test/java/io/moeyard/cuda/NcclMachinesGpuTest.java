package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The leg between machines on NCCL itself, on the one GPU: four rank processes as two pretend
 * machines of one node each ({@link CudaWorldRankMain} {@code machines-nccl}), the node-level
 * path's messages between them on an NCCL communicator of all four ranks made from rank 0's unique
 * id, its set-up and every enqueue bounded and watched, the host meetings over a cluster transport
 * of the pretend machines (machine barriers within each), as a world of real machines runs. Every rank matches the reference. NCCL
 * takes several ranks of one GPU only when told to ({@code NCCL_MULTI_RANK_GPU_ENABLE=1}, set here
 * for the ranks) and only in recent versions; where its set-up still refuses, the test is aborted
 * with NCCL's reason (printed by GpuTestMain), which says nothing of our code. Skipped without a
 * GPU or NCCL. Tagged {@code gpu-step}: bench/gpu/run.sh runs it as the step {@code nccl-machines}.
 */
@Tag(GpuTestMain.OWN_STEP)
class NcclMachinesGpuTest {

  @BeforeEach
  void gpuAndNccl() {
    NativeTestSupport.requireGpuAndNccl();
  }

  @Test
  void twoPretendMachinesOverNcclMatchTheReference() throws Exception {
    long seed = TestSeed.fresh().value();
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(4, 2, Map.of("NCCL_MULTI_RANK_GPU_ENABLE", "1"),
        CudaWorldRankMain.class.getName(), Long.toString(seed), "machines-nccl");
    String all = CudaIpcGpuTest.finish(ranks, 120);
    System.out.println(all);
    for (int r = 0; r < 4; r++) {
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
    }
    String refused = all.lines().filter(l -> l.contains(CudaWorldRankMain.NCCL_REFUSED)).findFirst().orElse(null);
    Assumptions.assumeTrue(refused == null, () -> "NCCL would not take four ranks of one GPU: " + refused);
    for (int r = 0; r < 4; r++) {
      assertTrue(ranks.get(r).text().contains("cuda-world rank " + r + ": ok, 4 cases as machines over NCCL"), all);
    }
  }
}
