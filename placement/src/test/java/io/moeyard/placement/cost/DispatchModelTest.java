package io.moeyard.placement.cost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import org.junit.jupiter.api.Test;

class DispatchModelTest {

  @Test
  void dedupAndLocalReplicaHandComputed() {
    // GPU 0 {0, 1}, GPU 1 {2, 0}; one GPU per node. Tokens alternate homes 0, 1, 0, 1.
    int[] layer = {0, 1, 2, 0};
    Placement p = new Placement(3, 2, new int[][] {layer, layer});
    int[][] perToken = {{0, 2}, {0, 1}, {1, -1}, {2, 0}};
    int[] ids = new int[4 * 2 * 2];
    for (int t = 0; t < 4; t++) {
      for (int l = 0; l < 2; l++) for (int k = 0; k < 2; k++) ids[(t * 2 + l) * 2 + k] = perToken[t][k];
    }
    RoutingTrace tr = new RoutingTrace("hand", 4, 2, 2, 3, ids);
    DispatchCost c = DispatchModel.replay(tr, p, new Network(2, 1, 1, 1, 1), null);
    // t0: e0 local on G0, e2 on G1. t1: e0's replica on G1, e1 on G0. t2: G0. t3: e2 and e0 both on G1 -> one row.
    assertArrayEquals(new long[] {2, 1}, c.layers()[0].rows()[0]);
    assertArrayEquals(new long[] {1, 2}, c.layers()[0].rows()[1]);
    assertEquals(0, c.intraBytes());
    assertEquals(4, c.interBytes()); // 2 per layer
    assertEquals(2e-9, c.seconds(), 1e-18); // 1 byte each way per layer at 1 GB/s
    // Transitions: t0 4 pairs (2 cross), t1 4 (2 cross), t2 1 (0), t3 4 (0).
    assertEquals(13, c.transitions());
    assertEquals(4, c.crossGpu());
    assertEquals(4, c.crossNode());
  }

  @Test
  void remoteReplicasSpreadOverTokensOfOneGpu() {
    // 4 GPUs on 2 nodes; expert 0 lives on GPUs 2 and 3 only.
    int[] layer = {1, 2, 3, 1, 0, 2, 0, 3};
    Placement p = new Placement(4, 4, new int[][] {layer});
    int[] ids = new int[8];
    RoutingTrace tr = new RoutingTrace("spread", 8, 1, 1, 4, ids); // every token picks expert 0
    DispatchCost c = DispatchModel.replay(tr, p, new Network(2, 10, 2, 100, 10), null);
    long[][] rows = c.layers()[0].rows();
    assertArrayEquals(new long[] {0, 0, 1, 1}, rows[0]); // tokens 0 and 4: no replica on node 0, spread
    assertArrayEquals(new long[] {0, 0, 1, 1}, rows[1]);
    assertArrayEquals(new long[] {0, 0, 2, 0}, rows[2]); // own GPU
    assertArrayEquals(new long[] {0, 0, 0, 2}, rows[3]);
    assertEquals(4 * 20, c.interBytes());
    assertEquals(0, c.intraBytes());
    // GPU 2 receives 2 rows = 40 bytes over 10 GB/s.
    assertEquals(40 / 10e9, c.seconds(), 1e-18);
  }
}
