package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The map itself; its replica rule is checked against the test kit's reference in the combine module ({@code TestKitTest}). */
class ExpertMapTest {
  @Test
  void trivialMapAndErrors() {
    Topology topo = Topology.singleNode(4);
    ExpertMap m = ExpertMap.trivial(topo, 8);
    assertEquals(2, m.slotsPerRank());
    assertEquals(3, m.rankOfSlot(7));
    assertEquals(5, m.chooseSlot(0, 0, 5));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.trivial(topo, 6));
    assertTrue(e.getMessage().contains("experts (6) must be divisible by the world size (4)"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.of(topo, 3, new int[] {0, 1, 1, 1}));
    assertTrue(e.getMessage().contains("expert 2 has no physical slot"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertMap.of(topo, 3, new int[] {0, 1, 2, 3}));
    assertTrue(e.getMessage().contains("slot 3 maps to expert 3"), e.getMessage());
  }
}
