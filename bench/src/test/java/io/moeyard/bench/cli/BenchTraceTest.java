package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.bench.run.TraceRouting;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.trace.NpyWriter;
import io.moeyard.placement.trace.RoutingTrace;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `moeyard bench --trace`: routing from a per-token trace, verified like random routing. */
class BenchTraceTest {
  @TempDir Path dir;

  /** A skewed trace with -1 entries, tokens routed nowhere and one expert every token picks. */
  private static int[] skewedIds(SplittableRandom rnd, int tokens, int layers, int topk, int experts) {
    int[] ids = new int[tokens * layers * topk];
    for (int t = 0; t < tokens; t++) {
      for (int l = 0; l < layers; l++) {
        int base = (t * layers + l) * topk;
        boolean nowhere = rnd.nextInt(20) == 0;
        for (int k = 0; k < topk; k++) {
          int e;
          if (nowhere || rnd.nextInt(10) == 0) e = -1;
          else if (k == 0) e = 0; // the hot expert
          else {
            do {
              e = 1 + (int) Math.min(experts - 2, Math.floor(Math.pow(rnd.nextDouble(), 3) * (experts - 1)));
              boolean dup = false;
              for (int j = 0; j < k; j++) dup |= ids[base + j] == e;
              if (!dup) break;
            } while (true);
          }
          ids[base + k] = e;
        }
      }
    }
    return ids;
  }

  private Path write(int[] ids, int tokens, int layers, int topk) throws Exception {
    Path f = dir.resolve("trace-" + System.nanoTime() + ".npy");
    try (OutputStream out = Files.newOutputStream(f)) {
      NpyWriter.write(out, new int[] {tokens, layers, topk}, ids);
    }
    return f;
  }

  @Test
  void traceRoutingSlicesConsecutiveTokensPerRank() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int tokens = 50, layers = 3, topk = 4, experts = 12;
    int[] ids = skewedIds(rnd, tokens, layers, topk, experts);
    RoutingTrace trace = new RoutingTrace("t", tokens, layers, topk, experts, ids);
    TraceRouting tr = new TraceRouting("t", trace, 2);
    int perRank = tr.tokensPerRank(4);
    assertEquals(12, perRank);
    for (int r = 0; r < 4; r++) {
      int[] got = tr.rankRouting(r, perRank);
      for (int t = 0; t < perRank; t++) {
        for (int k = 0; k < topk; k++) assertEquals(ids[((r * perRank + t) * layers + 2) * topk + k], got[t * topk + k], seed.toString());
      }
    }
  }

  @Test
  void benchOnASkewedTraceVerifies() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int tokens = 4 * 30 + 3, layers = 2, topk = 3, experts = 8;
    Path f = write(skewedIds(rnd, tokens, layers, topk, experts), tokens, layers, topk);
    Path json = dir.resolve("bench.json");
    int rc = Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--layer", "1", "--ranks", "4",
        "--hidden", "128", "--iters", "2", "--warmup", "0", "--json", json.toString());
    assertEquals(0, rc, seed.toString());
    JsonNode root = new ObjectMapper().readTree(json.toFile());
    assertEquals(30, root.path("config").path("tokens").asInt(), "the trace split evenly over 4 ranks");
    assertEquals(8, root.path("config").path("experts").asInt());
    assertEquals(3, root.path("config").path("topk").asInt());
    assertTrue(root.path("config").path("routing").asText().contains("layer 1"));
    assertTrue(root.path("verified").asBoolean(), seed.toString());
  }

  @Test
  void badTraceOptionsExitWith2() throws Exception {
    SplittableRandom rnd = new SplittableRandom(1);
    Path f = write(skewedIds(rnd, 40, 2, 2, 8), 40, 2, 2);
    Path loadOnly = dir.resolve("loads.json");
    Files.writeString(loadOnly, "{\"logical_count\": [[1, 2, 3, 4]]}");
    assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--layer", "2"));
    assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--ranks", "4", "--tokens", "11"));
    assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--topk", "3"));
    assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", loadOnly.toString()));
    assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", dir.resolve("missing.npy").toString()));
    assertEquals(2, Moeyard.commandLine().execute("bench", "--layer", "1"));
  }

  @Test
  void benchRunsOnAPlansSlotsAndRefusesPlansThatDoNotFit() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int tokens = 4 * 20, layers = 2, topk = 2, experts = 8;
    Path f = write(skewedIds(rnd, tokens, layers, topk, experts), tokens, layers, topk);
    // 12 slots on 4 ranks: expert 0 (the hot one) on three ranks
    Path plan = dir.resolve("plan.json");
    Files.writeString(plan, "{\"physical_to_logical_map\": [[0,1,2, 0,3,4, 0,5,6, 7,1,2], [0,1,2, 3,4,5, 6,7,0, 1,2,3]]}");
    Path json = dir.resolve("bench.json");
    int rc = Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--layer", "0", "--ranks", "4", "--nodes", "2",
        "--experts", "8", "--placement", plan.toString(), "--hidden", "64", "--iters", "2", "--warmup", "0", "--json", json.toString());
    assertEquals(0, rc, seed.toString());
    JsonNode root = new ObjectMapper().readTree(json.toFile());
    assertTrue(root.path("verified").asBoolean(), seed.toString());
    // the placement cost model counts the same rows with the same replica rule
    RoutingTrace rt = (RoutingTrace) io.moeyard.placement.trace.Traces.load(f, 8);
    io.moeyard.placement.model.Placement pl = io.moeyard.placement.format.PlacementReader.read(plan, 4, 8);
    io.moeyard.placement.cost.WireRows wire = io.moeyard.placement.cost.WireRows.count(
        rt, 0, pl, new io.moeyard.engine.Topology(2, 2), 20);
    assertEquals(wire.receivedMax(), root.path("rows").path("received_max").asLong(), seed.toString());
    assertEquals(wire.receivedMean(), root.path("rows").path("received_mean").asDouble(), 1e-9, seed.toString());
    assertEquals(wire.remote(), root.path("rows").path("remote").asLong(), seed.toString());
    assertEquals(wire.remoteNode(), root.path("rows").path("remote_node").asLong(), seed.toString());

    Path oneLayer = dir.resolve("one-layer.json");
    Files.writeString(oneLayer, "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,7]]}");
    Path fewExperts = dir.resolve("few.json");
    Files.writeString(fewExperts, "{\"physical_to_logical_map\": [[0,1,2,3], [0,1,2,3]]}");
    Path odd = dir.resolve("odd.json");
    Files.writeString(odd, "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,7,0], [0,1,2,3,4,5,6,7,1]]}");
    for (Path bad : new Path[] {oneLayer, fewExperts, odd, dir.resolve("missing.json")}) {
      assertEquals(2, Moeyard.commandLine().execute("bench", "--trace", f.toString(), "--ranks", "4", "--experts", "8",
          "--placement", bad.toString()),
          bad.getFileName().toString());
    }
  }
}
