package io.moeyard.placement.speculate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.TraceFormatException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AffinityModelTest {
  @TempDir Path dir;

  @Test
  void countsMatchNaiveCountingAndSurviveARoundTrip() throws Exception {
    TestSeed base = TestSeed.fresh();
    for (int i = 0; i < 20; i++) {
      SplittableRandom rnd = new SplittableRandom(base.value() + i);
      int L = 1 + rnd.nextInt(4), K = 1 + rnd.nextInt(3), E = K + rnd.nextInt(6);
      RoutingTrace t = RandomTraces.routing(rnd, "t", 1 + rnd.nextInt(50), L, K, E);
      AffinityModel m = AffinityModel.learn(List.of(t));
      String ctx = base + " case " + i;
      for (int l = 0; l < L; l++) {
        long[] load = new long[E];
        long[][] next = new long[E][E], skip = new long[E][E];
        for (int tok = 0; tok < t.tokens(); tok++) {
          for (int b = 0; b < E; b++) {
            if (!chose(t, tok, l, b)) continue;
            load[b]++;
            for (int a = 0; a < E; a++) {
              if (l >= 1 && chose(t, tok, l - 1, a)) next[a][b]++;
              if (l >= 2 && chose(t, tok, l - 2, a)) skip[a][b]++;
            }
          }
        }
        for (int b = 0; b < E; b++) {
          assertEquals(load[b], m.load(l, b), ctx);
          for (int a = 0; a < E; a++) {
            assertEquals(next[a][b], m.next(l, a, b), ctx);
            assertEquals(skip[a][b], m.skip(l, a, b), ctx);
          }
        }
      }
      Path f = dir.resolve("m" + i + ".json");
      m.write(f);
      assertEquals(m, AffinityModel.read(f), ctx);
    }
  }

  private static boolean chose(RoutingTrace t, int tok, int l, int e) {
    for (int k = 0; k < t.topk(); k++) if (t.expert(tok, l, k) == e) return true;
    return false;
  }

  @Test
  void malformedFilesAreNamed() throws Exception {
    Path f = dir.resolve("bad.json");
    Files.writeString(f, "{\"format\": \"moeyard-affinity\", \"version\": 1, \"layers\": 1, \"experts\": 2, \"tokens\": 1,"
        + " \"loads\": [[1, 0]], \"next\": [[[0, 5, 1]]], \"skip\": [[]]}");
    TraceFormatException e = assertThrows(TraceFormatException.class, () -> AffinityModel.read(f));
    assertTrue(e.getMessage().contains("[0,5,1]") && e.getMessage().contains("bad.json"), e.getMessage());
    Files.writeString(f, "{\"physical_to_logical_map\": [[0]]}");
    assertTrue(assertThrows(TraceFormatException.class, () -> AffinityModel.read(f)).getMessage().contains("not an affinity model"));
  }
}
