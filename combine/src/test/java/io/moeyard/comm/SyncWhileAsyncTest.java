package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/**
 * A synchronous call made while this rank's async calls are still in their collectives: refused
 * on every rank alike, and the async calls it would have overtaken still complete correctly
 * (the refusal must not meet the peers in the lane's collective).
 */
class SyncWhileAsyncTest {
  private static final Topology TOPO = Topology.singleNode(3);
  private static final ExpertMap MAP = ExpertMap.trivial(TOPO, 6);
  private static final int TOKENS = 5;
  private static final int HIDDEN = 16;
  private static final CommConfig CFG = CommConfig.of(TOKENS, HIDDEN, 2, DType.BF16, DType.BF16);

  private static Routing routing(int rank) {
    int[] idx = new int[TOKENS * 2];
    float[] w = new float[TOKENS * 2];
    for (int i = 0; i < idx.length; i++) {
      idx[i] = (i / 2 * 2 + i % 2 + rank) % 6;
      w[i] = 0.5f;
    }
    return new Routing(TOKENS, 2, idx, w);
  }

  @Test
  void aSynchronousDispatchWhileAnAsyncOneWaitsForPeersIsRefusedOnEveryRank() {
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      try (CpuWorld world = CpuWorld.create(TOPO, Duration.ofSeconds(10)); Arena arena = Arena.ofShared()) {
        List<String> said = world.run(t -> {
          int r = t.rank();
          RowBuffer x = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
          Workload.fill(x, new SplittableRandom(seed.value() + r));
          try (Communicator comm = Communicator.cpu(t, MAP, CFG)) {
            if (r == 2) sleep(300); // ranks 0 and 1's async dispatch waits for rank 2's
            CompletableFuture<Dispatched> f = comm.dispatchAsync(x, routing(r));
            String msg;
            try {
              comm.dispatch(x, routing(r));
              msg = "rank " + r + ": dispatched";
            } catch (CollectiveException e) {
              msg = e.getMessage();
            }
            Dispatched d = f.join();
            Dispatched again = comm.dispatch(x, routing(r));
            assertEquals(again.received().rows(), d.received().rows(), "rank " + r + ": the async dispatch's rows");
            return msg;
          }
        });
        for (String m : said) {
          assertTrue(m.contains("a synchronous call while 1 async call(s) are pending"), said.toString());
          assertEquals(said.get(0), m, said.toString());
        }
      }
    });
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
