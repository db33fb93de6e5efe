package io.moeyard.placement.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.format.PlacementFormat;
import io.moeyard.placement.format.PlacementReader;
import io.moeyard.placement.format.PlacementWriter;
import io.moeyard.placement.testkit.WireCases;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PlacementExpertMapTest {
  @TempDir Path dir;

  @Test
  void everyLayerBecomesTheExpertMapWithItsSlotsAndBack() {
    TestSeed base = TestSeed.fresh();
    for (int c = 0; c < 200; c++) {
      long seed = base.value() + c;
      String ctx = base + " case " + c;
      SplittableRandom rnd = new SplittableRandom(seed);
      Topology topo = WireCases.topology(rnd);
      Placement p = WireCases.placement(rnd, 1 + rnd.nextInt(4), topo.worldSize());
      List<ExpertMap> maps = p.expertMaps(topo);
      assertEquals(p.layers(), maps.size(), ctx);
      for (int l = 0; l < p.layers(); l++) {
        ExpertMap m = maps.get(l);
        assertEquals(p.experts(), m.experts(), ctx);
        assertEquals(p.slotsPerGpu(), m.slotsPerRank(), ctx);
        assertEquals(topo, m.topology(), ctx);
        assertArrayEquals(p.phy2log()[l], m.physicalToLogical(), ctx);
        int[][][] log2phy = p.log2phy();
        for (int e = 0; e < p.experts(); e++) {
          int[] slots = m.slotsOf(e);
          for (int i = 0; i < slots.length; i++) assertEquals(log2phy[l][e][i], slots[i], ctx);
          for (int s : slots) assertEquals(p.gpuOfSlot(s), m.rankOfSlot(s), ctx);
        }
      }
      Placement back = Placement.of(maps);
      assertEquals(p.experts(), back.experts(), ctx);
      assertEquals(p.gpus(), back.gpus(), ctx);
      for (int l = 0; l < p.layers(); l++) assertArrayEquals(p.phy2log()[l], back.phy2log()[l], ctx);
    }
  }

  @Test
  void planFilesConvertInEveryFormat() throws IOException {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    Topology topo = new Topology(2, 4);
    Placement p = WireCases.placement(rnd, 3, topo.worldSize());
    for (PlacementFormat f : PlacementFormat.values()) {
      Path file = dir.resolve(f.id + ".json");
      PlacementWriter.write(p, f, file);
      Placement read = PlacementReader.read(file, topo.worldSize(), p.experts());
      for (int l = 0; l < p.layers(); l++) {
        assertArrayEquals(p.phy2log()[l], read.expertMap(l, topo).physicalToLogical(), f + " " + seed);
      }
    }
  }

  @Test
  void refusesAMismatchNamingIt() {
    Placement p = new Placement(4, 4, new int[][] {{0, 1, 2, 3}, {3, 2, 1, 0}});
    String world = assertThrows(IllegalArgumentException.class, () -> p.expertMap(0, new Topology(2, 4))).getMessage();
    assertTrue(world.contains("8 ranks") && world.contains("4 GPUs"), world);
    String layer = assertThrows(IllegalArgumentException.class, () -> p.expertMap(2, new Topology(2, 2))).getMessage();
    assertTrue(layer.contains("layer 2") && layer.contains("[0, 2)"), layer);
    ExpertMap a = ExpertMap.of(Topology.singleNode(2), 4, new int[] {0, 1, 2, 3});
    ExpertMap b = ExpertMap.of(Topology.singleNode(2), 3, new int[] {0, 1, 2, 0});
    String mixed = assertThrows(IllegalArgumentException.class, () -> Placement.of(List.of(a, b))).getMessage();
    assertTrue(mixed.contains("layer 1 maps 3 experts"), mixed);
  }
}
