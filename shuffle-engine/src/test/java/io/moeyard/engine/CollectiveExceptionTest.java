package io.moeyard.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.transport.CpuWorld;
import java.util.List;
import org.junit.jupiter.api.Test;

/** An abort's reason: a plain cause with its class, a collective's own failure by its message alone. */
class CollectiveExceptionTest {
  @Test
  void aCollectivesFailureIsPassedOnByItsMessageAlone() {
    assertEquals("rank 2 aborted: java.lang.IllegalStateException: bad rows", CollectiveException.abortReason(2, new IllegalStateException("bad rows")));
    assertEquals("rank 0 aborted: rank 0: world aborted by rank 3: rank 3 aborted: java.lang.IllegalStateException: x",
        CollectiveException.abortReason(0, new CollectiveException("rank 0: world aborted by rank 3: rank 3 aborted: java.lang.IllegalStateException: x")));
    assertEquals("null", CollectiveException.describe(null));
  }

  /** A rank that passes the world's failure on (aborting with it) adds no class name to the chain. */
  @Test
  void passingTheWorldsFailureOnAddsNoClassName() {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(2))) {
      List<String> msgs = world.run(t -> {
        if (t.rank() == 1) {
          CollectiveException relayed = new CollectiveException("rank 1: the layout failed on rank 1");
          t.abort(relayed);
        }
        try {
          t.barrier();
          return "passed";
        } catch (CollectiveException e) {
          return e.getMessage();
        }
      });
      for (String m : msgs) {
        assertTrue(m.contains("rank 1 aborted: rank 1: the layout failed on rank 1"), m);
        assertFalse(m.contains("CollectiveException"), m);
      }
    }
  }
}
