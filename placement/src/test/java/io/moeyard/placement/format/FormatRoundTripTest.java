package io.moeyard.placement.format;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.eplb.Eplb;
import io.moeyard.placement.model.Placement;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FormatRoundTripTest {
  @TempDir Path dir;

  private static Placement randomEplb(long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    double[][] w = new double[3][12];
    for (double[] row : w) for (int e = 0; e < 12; e++) row[e] = r.nextInt(500);
    return Eplb.rebalance(w, 16, 4, 2, 8);
  }

  @Test
  void everyFormatRoundTrips() throws IOException {
    TestSeed seed = TestSeed.fresh();
    Placement p = randomEplb(seed.value());
    for (PlacementFormat f : PlacementFormat.values()) {
      Path out = dir.resolve(f.id + ".json");
      PlacementWriter.write(p, f, out);
      Placement back = PlacementReader.read(out, 8, 12);
      for (int l = 0; l < p.layers(); l++) assertArrayEquals(p.phy2log()[l], back.phy2log()[l], f + " " + seed);
      assertEquals(8, back.gpus());
    }
  }

  @Test
  void filesHaveTheKeysEnginesRead() throws IOException {
    Placement p = randomEplb(1);
    ObjectMapper m = new ObjectMapper();
    Path s = dir.resolve("s.json");
    PlacementWriter.write(p, PlacementFormat.SGLANG, s);
    JsonNode sg = m.readTree(s.toFile());
    assertEquals(3, sg.get("physical_to_logical_map").size());
    assertEquals(16, sg.get("physical_to_logical_map").get(0).size());

    Path e = dir.resolve("e.json");
    PlacementWriter.write(p, PlacementFormat.EPLB, e);
    JsonNode ep = m.readTree(e.toFile());
    int[][] logcnt = p.logcnt();
    for (int l = 0; l < 3; l++) {
      int sum = 0;
      for (int x = 0; x < 12; x++) {
        assertEquals(logcnt[l][x], ep.get("logcnt").get(l).get(x).asInt());
        sum += logcnt[l][x];
        JsonNode slots = ep.get("log2phy").get(l).get(x);
        for (int k = 0; k < slots.size(); k++) {
          int slot = slots.get(k).asInt();
          if (k < logcnt[l][x]) assertEquals(x, p.phy2log()[l][slot]);
          else assertEquals(-1, slot);
        }
      }
      assertEquals(16, sum);
    }

    Path v = dir.resolve("v.json");
    PlacementWriter.write(p, PlacementFormat.VLLM_ASCEND, v);
    JsonNode va = m.readTree(v.toFile());
    assertEquals(3, va.get("moe_layer_count").asInt());
    JsonNode layer1 = va.get("layer_list").get(1);
    assertEquals(1, layer1.get("layer_id").asInt());
    assertEquals(8, layer1.get("device_count").asInt());
    JsonNode dev3 = layer1.get("device_list").get(3);
    assertEquals(3, dev3.get("device_id").asInt());
    assertEquals(p.phy2log()[1][6], dev3.get("device_expert").get(0).asInt());
    assertEquals(p.phy2log()[1][7], dev3.get("device_expert").get(1).asInt());
  }

  @Test
  void failedWriteLeavesNoFile() throws IOException {
    Path out = dir.resolve("plan.json");
    assertThrows(IOException.class, () -> PlacementWriter.writeAtomically(out, os -> {
      os.write("{\"partial\":".getBytes());
      throw new IOException("disk full");
    }));
    try (Stream<Path> s = Files.list(dir)) {
      assertEquals(0, s.count(), "neither the target nor a temp file may remain");
    }
    Files.writeString(out, "old");
    assertThrows(IOException.class, () -> PlacementWriter.writeAtomically(out, os -> {
      throw new IOException("boom");
    }));
    assertEquals("old", Files.readString(out));
  }

  @Test
  void readerRefusesNonPlacements() throws IOException {
    Path f = dir.resolve("x.json");
    Files.writeString(f, "{\"logical_count\": [[1]]}");
    var e = assertThrows(IllegalArgumentException.class, () -> PlacementReader.read(f, 1, 0));
    assertTrue(e.getMessage().contains("not a placement file"), e.getMessage());
  }
}
