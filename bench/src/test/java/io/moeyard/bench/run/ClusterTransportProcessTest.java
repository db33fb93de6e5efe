package io.moeyard.bench.run;

import static io.moeyard.bench.run.ChildRanks.outputs;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.bench.run.ChildRanks.Rank;
import io.moeyard.engine.shm.ShmFiles;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Ranks as processes of {@link io.moeyard.engine.shm.ClusterTransport} on two pretend machines
 * (ranks 0 and 2 on one, 1 and 3 on the other): child JVMs ({@link ClusterRankMain}) whose files
 * carry this JVM's pid as their owner, so the test can check that none is left behind.
 */
class ClusterTransportProcessTest {
  private static final int[] MACHINES = {0, 1, 0, 1};

  private static List<Rank> start(String mode) throws IOException {
    return ChildRanks.start(ClusterRankMain.class, MACHINES.length, MACHINES.length, r -> List.of(Integer.toString(MACHINES[r]), mode));
  }

  /**
   * kill -9 of one rank while all loop: a non-leader (3) or a leader (1) of machine 1, or rank 0
   * (machine 0's leader, and the store's host: the other machine hears of it from the store's end).
   * The others, on both machines, fail well within the 10 s timeout naming it, and no file is
   * left behind. The ranks loop over all-gathers and machine barriers ("gather"), or over
   * sendRecv between machines ("sendrecv": killed while its peers read its links, most likely).
   */
  @ParameterizedTest
  @CsvSource({"gather,3", "gather,1", "gather,0", "sendrecv,3", "sendrecv,0"})
  void aKilledRankIsNamedOnEveryMachineQuickly(String mode, int victim) throws Exception {
    List<Rank> ranks = start(mode);
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      for (Rank r : ranks) {
        while (!r.text().contains("looping")) {
          assertTrue(r.process().isAlive(), "a rank exited before the kill:\n" + outputs(ranks));
          assertTrue(System.nanoTime() < deadline, "ranks never started looping:\n" + outputs(ranks));
          Thread.sleep(20);
        }
      }
      long killedAt = System.nanoTime();
      ranks.get(victim).process().destroyForcibly(); // SIGKILL
      for (int r = 0; r < ranks.size(); r++) {
        if (r == victim) continue;
        assertTrue(ranks.get(r).process().waitFor(8, TimeUnit.SECONDS), "rank " + r + " still running 8 s after the kill:\n"
            + outputs(ranks));
      }
      long millis = (System.nanoTime() - killedAt) / 1_000_000;
      ranks.get(victim).process().waitFor(10, TimeUnit.SECONDS);
      String all = outputs(ranks);
      for (int r = 0; r < ranks.size(); r++) {
        if (r == victim) continue;
        assertNotEquals(0, ranks.get(r).process().exitValue(), "rank " + r + " exited 0:\n" + all);
        String text = ranks.get(r).text();
        assertTrue(text.contains("collective failed: CollectiveTimeoutException") && text.contains("rank " + victim),
            "rank " + r + " did not name rank " + victim + ":\n" + all);
      }
      assertTrue(millis < 5_000, "the survivors took " + millis + " ms to fail:\n" + all);
      List<?> left = ShmFiles.list(ProcessHandle.current().pid());
      assertTrue(left.isEmpty(), "shared-memory files left behind: " + left + "\n" + all);
    } finally {
      for (Rank r : ranks) r.process().destroyForcibly();
      for (Rank r : ranks) r.process().waitFor(10, TimeUnit.SECONDS);
    }
  }
}
