package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class AsyncLaneTest {
  /**
   * A call running on the lane (a synchronous call made from a continuation the lane completed)
   * that waits for the lane to drain must not wait for itself, nor for the calls queued behind it,
   * which cannot be in a collective while the lane's one thread is here.
   */
  @Test
  void waitingForTheLaneFromItsOwnThreadReturns() throws Exception {
    AsyncLane lane = new AsyncLane("lane-test", "test");
    CompletableFuture<String> first = lane.submit(() -> {
      lane.awaitIdle();
      return "done";
    });
    CompletableFuture<String> second = lane.submit(() -> "second");
    assertEquals("done", first.get(10, TimeUnit.SECONDS));
    assertEquals("second", second.get(10, TimeUnit.SECONDS));
    lane.close();
  }

  @Test
  void waitingForTheLaneFromAnotherThreadWaitsForItsCalls() throws Exception {
    try (AsyncLane lane = new AsyncLane("lane-test", "test")) {
      CompletableFuture<Void> gate = new CompletableFuture<>();
      CompletableFuture<String> call = lane.submit(() -> {
        gate.join();
        return "done";
      });
      Thread opener = Thread.ofVirtual().start(() -> {
        try {
          Thread.sleep(100);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        gate.complete(null);
      });
      lane.awaitIdle();
      assertEquals(true, call.isDone());
      assertEquals(0, lane.pending());
      opener.join();
    }
  }
}
