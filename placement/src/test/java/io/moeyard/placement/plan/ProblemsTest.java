package io.moeyard.placement.plan;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.trace.LoadTrace;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.List;
import org.junit.jupiter.api.Test;

class ProblemsTest {
  @Test
  void loadsPerWorkloadPairCountsSummed() {
    // 2 layers, top-1, 3 experts.
    RoutingTrace a = new RoutingTrace("a", 2, 2, 1, 3, new int[] {0, 1, 0, 1});
    RoutingTrace b = new RoutingTrace("b", 1, 2, 1, 3, new int[] {0, 1});
    PlacementProblem p = Problems.fromTraces(List.of(a, b), 1, 1, 3);
    assertEquals(2, p.loads().length);
    assertArrayEquals(new double[] {2, 0, 0}, p.loads()[0][0]);
    assertArrayEquals(new double[] {1, 0, 0}, p.loads()[1][0]);
    assertEquals(1, p.transitions()[0].size());
    assertEquals(3, p.transitions()[0].count()[0]);
    assertArrayEquals(new double[] {0, 3, 0}, Problems.summedLoads(p)[1]);
  }

  @Test
  void loadOnlyHasNoAffinityAndTrivialWraps() {
    LoadTrace t = new LoadTrace("lc", new double[][] {{1, 2, 3}});
    PlacementProblem p = Problems.fromTraces(List.of(t), 2, 1, 4);
    assertNull(p.transitions());
    assertArrayEquals(new int[] {0, 1, 2, 0}, Planners.trivial(p).phy2log()[0]);
  }
}
