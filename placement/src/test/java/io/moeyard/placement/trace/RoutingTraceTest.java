package io.moeyard.placement.trace;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.model.PairCounts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RoutingTraceTest {
  @TempDir Path dir;

  @Test
  void derivedCountsMatchNaiveCounting() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    for (int trial = 0; trial < 30; trial++) {
      int T = 1 + rnd.nextInt(40), L = 1 + rnd.nextInt(4), K = 1 + rnd.nextInt(4), E = K + rnd.nextInt(6);
      int[] ids = new int[T * L * K];
      for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(8) == 0 ? -1 : rnd.nextInt(E);
      String ctx = seed + " trial=" + trial + " T=" + T + " L=" + L + " K=" + K + " E=" + E;
      RoutingTrace t = new RoutingTrace("r", T, L, K, E, ids);
      double[][] loads = new double[L][E];
      Map<String, Long> trans = new HashMap<>(), co = new HashMap<>();
      for (int tok = 0; tok < T; tok++) {
        for (int l = 0; l < L; l++) {
          for (int a = 0; a < K; a++) {
            int x = t.expert(tok, l, a);
            if (x < 0) continue;
            loads[l][x]++;
            for (int b = a + 1; b < K; b++) {
              int y = t.expert(tok, l, b);
              if (y >= 0 && y != x) co.merge(l + ":" + Math.min(x, y) + ":" + Math.max(x, y), 1L, Long::sum);
            }
            if (l + 1 < L) {
              for (int b = 0; b < K; b++) {
                int y = t.expert(tok, l + 1, b);
                if (y >= 0) trans.merge(l + ":" + x + ":" + y, 1L, Long::sum);
              }
            }
          }
        }
      }
      double[][] got = t.loads();
      for (int l = 0; l < L; l++) assertArrayEquals(loads[l], got[l], ctx);
      assertEquals(trans, flatten(t.transitions()), ctx);
      assertEquals(co, flatten(t.coactivations()), ctx);
    }
  }

  @Test
  void sparseBuilderAgreesWithDense() {
    int experts = PairCountsBuilder.DENSE_LIMIT + 5;
    PairCountsBuilder b = new PairCountsBuilder(experts);
    b.add(experts - 1, 3, 2);
    b.add(0, experts - 1, 1);
    b.add(experts - 1, 3, 1);
    PairCounts p = b.build();
    assertArrayEquals(new int[] {0, experts - 1}, p.from());
    assertArrayEquals(new int[] {experts - 1, 3}, p.to());
    assertArrayEquals(new long[] {1, 3}, p.count());
  }

  private static Map<String, Long> flatten(PairCounts[] ps) {
    Map<String, Long> m = new HashMap<>();
    for (int l = 0; l < ps.length; l++) {
      for (int i = 0; i < ps[l].size(); i++) m.put(l + ":" + ps[l].from()[i] + ":" + ps[l].to()[i], ps[l].count()[i]);
    }
    return m;
  }

  @Test
  void readsLogicalCountJson() throws Exception {
    Path f = dir.resolve("lc.json");
    Files.writeString(f, "{\"logical_count\": [[1, 2, 3], [4, 5, 6]]}");
    Trace t = Traces.load(f, 0);
    assertTrue(t instanceof LoadTrace);
    assertEquals(2, t.layers());
    assertEquals(3, t.experts());
    assertArrayEquals(new double[] {4, 5, 6}, t.loads()[1]);
    Path f3 = dir.resolve("lc3.json");
    Files.writeString(f3, "{\"logical_count\": [[[1, 2], [3, 4]], [[10, 20], [30, 40]]]}");
    assertArrayEquals(new double[] {33, 44}, Traces.load(f3, 0).loads()[1]);
  }

  @Test
  void refusesBadLogicalCount() throws Exception {
    assertRefused("{\"logical_count\": [[1, 2], [3]]}", "layer 1 has 1 experts");
    assertRefused("{\"logical_count\": [[1, -2]]}", "logical_count[0][1] = -2.0");
    assertRefused("{\"counts\": [[1]]}", "no \"logical_count\"");
    assertRefused("{\"logical_count\": [[1, 2]", "malformed JSON");
    assertRefused("{\"logical_count\": [[1, \"x\"]]}", "not a number");
    assertRefused("", "empty");
    assertRefused("garbage", "neither");
  }

  private void assertRefused(String content, String part) throws Exception {
    Path f = Files.createTempFile(dir, "bad", ".json");
    Files.writeString(f, content);
    var e = assertThrows(TraceFormatException.class, () -> Traces.load(f, 0));
    assertTrue(e.getMessage().contains(part), e.getMessage());
  }
}
