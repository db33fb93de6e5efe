package io.moeyard.engine.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.Topology;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** {@link Transport#checkPeers} of ranks that are threads: it throws what the next collective would. */
@Timeout(20)
class CpuWorldCheckPeersTest {

  @Test
  void aHealthyWorldReturnsBetweenCollectives() {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(3))) {
      List<Integer> sums = world.run(t -> {
        int sum = 0;
        for (int round = 0; round < 4; round++) {
          t.checkPeers();
          for (Object o : t.allGather(t.rank() + round)) sum += (Integer) o;
          t.checkPeers();
        }
        return sum;
      });
      assertEquals(List.of(30, 30, 30), sums); // (0 + 1 + 2) * 4 + 3 * (0 + 1 + 2 + 3)
      assertFalse(world.aborted());
    }
  }

  @Test
  void afterAnAbortEveryRanksCheckThrowsWhatItsNextCollectiveThrows() {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(3))) {
      IllegalStateException cause = new IllegalStateException("bad shape 5");
      world.transport(1).abort(cause);
      for (int r = 0; r < 3; r++) {
        Transport t = world.transport(r);
        CollectiveException checked = assertThrows(CollectiveException.class, t::checkPeers);
        CollectiveException next = assertThrows(CollectiveException.class, t::barrier);
        assertFalse(checked instanceof CollectiveTimeoutException, checked.getMessage());
        assertEquals("world aborted: rank 1 aborted: " + cause, checked.getMessage());
        assertEquals(next.getMessage(), checked.getMessage());
        assertSame(cause, checked.getCause());
      }
    }
  }

  @Test
  void afterATimeoutTheCheckNamesTheMissingRanks() {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(3), Duration.ofMillis(100))) {
      CollectiveTimeoutException waited = assertThrows(CollectiveTimeoutException.class, world.transport(0)::barrier);
      assertEquals(List.of(1, 2), waited.missingRanks());
      CollectiveTimeoutException checked = assertThrows(CollectiveTimeoutException.class, world.transport(2)::checkPeers);
      CollectiveTimeoutException next = assertThrows(CollectiveTimeoutException.class, world.transport(2)::barrier);
      assertEquals(List.of(1, 2), checked.missingRanks());
      assertEquals("world aborted: " + waited.getMessage(), checked.getMessage());
      assertEquals(next.getMessage(), checked.getMessage());
    }
  }
}
