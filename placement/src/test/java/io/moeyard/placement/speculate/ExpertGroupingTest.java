package io.moeyard.placement.speculate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.eplb.Eplb;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.SyntheticTrace;
import java.util.List;
import org.junit.jupiter.api.Test;

class ExpertGroupingTest {
  @Test
  void keepsEplbReplicaCountsAndBalanceAndGroupsCoActivatedExperts() {
    RoutingTrace t = SyntheticTrace.generate(new SyntheticTrace.Spec(6, 32, 4, 2000, 0.6, 0.8, 5, 4));
    double[][] loads = t.loads();
    Placement eplb = Eplb.rebalance(loads, 40, 1, 1, 4);
    Placement g = ExpertGrouping.plan(List.of(t), 4, 40, 0.9, null);
    assertArrayEquals(eplb.logcnt(), g.logcnt(), "same replica counts");
    var co = t.coactivations();
    for (int l = 0; l < t.layers(); l++) {
      double eb = CostModel.balancedness(CostModel.gpuLoads(loads[l], eplb.phy2log()[l], 4));
      double gb = CostModel.balancedness(CostModel.gpuLoads(loads[l], g.phy2log()[l], 4));
      assertTrue(gb >= Math.min(eb, 0.9) - 1e-9, "layer " + l + ": balancedness " + gb + " vs EPLB " + eb);
      assertTrue(together(co[l], g, l) >= together(co[l], eplb, l), "layer " + l);
    }
  }

  /** Co-activated pairs that share a rank. */
  private static long together(io.moeyard.placement.model.PairCounts c, Placement p, int l) {
    boolean[][] on = new boolean[p.gpus()][p.experts()];
    for (int s = 0; s < p.slots(); s++) on[p.gpuOfSlot(s)][p.phy2log()[l][s]] = true;
    long n = 0;
    for (int i = 0; i < c.size(); i++) {
      for (int r = 0; r < p.gpus(); r++) {
        if (on[r][c.from()[i]] && on[r][c.to()[i]]) {
          n += c.count()[i];
          break;
        }
      }
    }
    return n;
  }
}
