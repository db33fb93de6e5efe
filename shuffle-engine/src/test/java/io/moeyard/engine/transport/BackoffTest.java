package io.moeyard.engine.transport;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class BackoffTest {
  @Test
  void parksOnlyAfterEverySpinAndYield() {
    for (int spins = 0; spins < 4; spins++) {
      for (int yields = 0; yields < 4; yields++) {
        Backoff b = new Backoff(spins, yields, 1_000, 8_000);
        for (int i = 0; i < spins + yields; i++) {
          assertFalse(b.parking(), "step " + i + " of " + spins + " spins + " + yields + " yields");
          b.spinOrYield();
        }
        assertTrue(b.parking(), spins + " spins + " + yields + " yields");
      }
    }
  }

  @Test
  void parkIsBoundedByTheCallersLimit() {
    Backoff b = new Backoff(0, 0, 50_000_000, 50_000_000); // 50 ms intervals
    long t0 = System.nanoTime();
    b.park(this, 1_000); // 1 us asked: must not sleep the full interval
    assertTrue(System.nanoTime() - t0 < 40_000_000, "park ignored the caller's limit");
  }

  @Test
  void badSettingsAreNamed() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Backoff(1, 1, 10, 5));
    assertTrue(e.getMessage().contains("10, 5"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new Backoff(-1, 1, 10, 20));
    assertThrows(IllegalArgumentException.class, () -> new Backoff(1, 1, 0, 20));
  }
}
