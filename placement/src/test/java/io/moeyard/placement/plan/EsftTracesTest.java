package io.moeyard.placement.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.placement.cost.CostModel;
import io.moeyard.placement.cost.DispatchModel;
import io.moeyard.placement.cost.Network;
import io.moeyard.placement.cost.PlacementScore;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.model.PlacementProblem;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.Trace;
import io.moeyard.placement.trace.Traces;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** On real routing (DeepSeek ESFT-vanilla-lite, shared/data/esft), the figures the README quotes. */
class EsftTracesTest {
  static final Path DIR = Path.of("../../shared/data/esft").toAbsolutePath().normalize();
  static List<Trace> traces;

  @BeforeAll
  static void load() throws Exception {
    Assumptions.assumeTrue(Files.exists(DIR.resolve("translation.npy")),
        "ESFT traces not found at " + DIR + " (shared/data/esft next to the repository): skipping");
    traces = Traces.load(List.of(DIR.resolve("intent.npy"), DIR.resolve("law.npy"), DIR.resolve("summary.npy"),
        DIR.resolve("translation.npy")), 64);
  }

  @Test
  void shapesAreAsDocumented() {
    RoutingTrace intent = (RoutingTrace) traces.get(0);
    assertEquals(8222, intent.tokens());
    assertEquals(26, intent.layers());
    assertEquals(6, intent.topk());
    assertEquals(64, intent.experts());
  }

  @Test
  void eplbBalancesEachWorkloadItWasPlannedOn() {
    for (Trace t : traces) {
      PlacementProblem p = Problems.fromTraces(List.of(t), 16, 2, 80);
      double trivial = CostModel.score(p, Planners.trivial(p)).meanBalancedness();
      double eplb = CostModel.score(p, Planners.eplb(p, 1)).meanBalancedness();
      assertTrue(trivial < 0.65 && eplb > 0.95, t.name() + ": trivial " + trivial + ", eplb " + eplb);
    }
  }

  @Test
  void eplbPlannedOnThreeTasksLosesBalanceOnTheFourth() {
    PlacementProblem planned = Problems.fromTraces(traces.subList(0, 3), 16, 2, 80);
    Placement eplb = Planners.eplb(planned, 1);
    PlacementProblem translation = Problems.fromTraces(traces.subList(3, 4), 16, 2, 80);
    PlacementScore s = CostModel.score(translation, eplb);
    // Measured 0.502 (the issue quotes ~0.49): loads shift between workloads.
    assertTrue(s.meanBalancedness() > 0.4 && s.meanBalancedness() < 0.6, "translation balancedness " + s.meanBalancedness());
    // Still better than no plan at all, and the all-to-all estimate agrees.
    Placement trivial = Planners.trivial(planned);
    assertTrue(s.meanBalancedness() > CostModel.score(translation, trivial).meanBalancedness());
    RoutingTrace tr = (RoutingTrace) traces.get(3);
    Network net = new Network(2, 2048, 2, Network.DEFAULT_NVLINK_GBPS, Network.DEFAULT_NET_GBPS);
    assertTrue(DispatchModel.replay(tr, eplb, net, null).seconds() < DispatchModel.replay(tr, trivial, net, null).seconds());
  }
}
