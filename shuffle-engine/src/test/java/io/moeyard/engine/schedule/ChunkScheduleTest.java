package io.moeyard.engine.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moeyard.engine.testkit.TestSeed;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ChunkScheduleTest {
  @Test
  void visitsEveryItemOnceInOrderPerPeerRotatedFromSelfPlusOne() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 500; trial++) {
      int size = 1 + rnd.nextInt(9);
      int self = rnd.nextInt(size);
      int chunk = 1 + rnd.nextInt(7);
      int[] count = new int[size];
      for (int p = 0; p < size; p++) count[p] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(30);
      int[] next = new int[size];
      List<Integer> firstVisits = new ArrayList<>();
      ChunkSchedule.forEachChunk(self, count, chunk, (peer, from, to) -> {
        assertEquals(next[peer], from, seed + ": chunks of a peer must be contiguous and ascending");
        assertEquals(true, to - from <= chunk && to > from, seed.toString());
        if (from == 0) firstVisits.add(peer);
        next[peer] = to;
      });
      for (int p = 0; p < size; p++) assertEquals(count[p], next[p], seed + " peer " + p);
      List<Integer> expected = new ArrayList<>();
      for (int s = 0; s < size; s++) {
        int peer = (self + 1 + s) % size;
        if (count[peer] > 0) expected.add(peer);
      }
      assertEquals(expected, firstVisits, seed + ": first round in rotated order");
    }
  }
}
