package io.moeyard.bench.run;

import static io.moeyard.bench.run.ChildRanks.outputs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.bench.run.ChildRanks.Rank;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmFiles;
import io.moeyard.engine.testkit.TestSeed;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU data path across machines, end to end: rank processes over a {@link ClusterTransport}
 * whose pretend machines share no peer memory (a rank maps only its own machine's files, and a
 * segment of another machine's rank reaches it as an empty one, so a store there would throw).
 * The fused node-level path gives every output bit for bit as the in-JVM run of the same random
 * case, and the kit's reference; the shuffled combine delivers the reference's rows to random
 * targets (sent between machines, read within one); the single-hop and unfused paths are refused
 * by every rank ({@code ShmRankMain}'s {@code cluster} mode).
 */
class ClusterCpuProcessTest {
  private static final long SEED = TestSeed.fresh().value();

  @ParameterizedTest(name = "{0} processes, {1} nodes, {2} node(s) per machine")
  @CsvSource({"4, 2, 1", "3, 3, 1", "4, 4, 2"})
  void theNodeLevelPathGivesTheInJvmBitsAcrossMachines(int nprocs, int nodes, int nodesPerMachine) throws Exception {
    int cases = 5; // every edge-case kind of ShmRankMain.randomCase once
    long seed = SEED + 7L * nprocs + nodes;
    List<Rank> ranks = ChildRanks.start(ShmRankMain.class, nprocs, nprocs / nodes,
        r -> List.of("cluster", Long.toString(seed), Integer.toString(cases), Integer.toString(nodesPerMachine)));
    for (Rank r : ranks) {
      if (!r.process().waitFor(120, TimeUnit.SECONDS)) {
        for (Rank k : ranks) k.process().destroyForcibly();
        throw new AssertionError("a rank hung (seed " + seed + "):\n" + outputs(ranks));
      }
      r.pump().join(5_000);
    }
    String all = outputs(ranks);
    for (int r = 0; r < nprocs; r++) {
      String text = ranks.get(r).text();
      assertEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " failed (seed " + seed + "):\n" + all);
      assertTrue(text.contains("case " + (cases - 1) + " ok"), "rank " + r + " did not finish:\n" + all);
      assertTrue(text.contains("refused: rank " + r + ": the fused single-hop dispatch stores into the memory of ranks on other nodes"),
          "rank " + r + " did not refuse the single-hop path:\n" + all);
      assertTrue(text.contains("refused: rank " + r + ": the unfused dispatch stores into the memory of ranks on other nodes"),
          "rank " + r + " did not refuse the unfused path:\n" + all);
    }
    List<?> left = ShmFiles.list(ProcessHandle.current().pid());
    assertTrue(left.isEmpty(), "shared-memory files left behind: " + left + "\n" + all);
  }
}
