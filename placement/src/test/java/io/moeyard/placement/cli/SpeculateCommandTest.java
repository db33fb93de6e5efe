package io.moeyard.placement.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.placement.format.PlacementReader;
import io.moeyard.placement.speculate.AffinityModel;
import io.moeyard.placement.trace.NpyArray;
import io.moeyard.placement.trace.NpyReader;
import io.moeyard.placement.trace.NpyWriter;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SpeculateCommandTest {
  @TempDir Path dir;
  Path train;
  Path eval;

  @BeforeEach
  void traces() {
    train = dir.resolve("train.npy");
    eval = dir.resolve("eval.npy");
    for (Path p : new Path[] {train, eval}) {
      CliTest.Run r = CliTest.run(new TraceCommand(), "synth", "--layers", "4", "--experts", "16", "--topk", "2", "--tokens", "400",
          "--affinity", "0.8", "--domains", "4", "--seed", "3", "--out", p.toString());
      assertEquals(0, r.code(), r.err());
    }
  }

  private CliTest.Run speculate(String... args) {
    return CliTest.run(new SpeculateCommand(), args);
  }

  private List<String> files() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Test
  void writesTheReportThePlacementTheAssignmentsAndTheModel() throws IOException {
    Path plan = dir.resolve("p.json"), assign = dir.resolve("a.npy"), json = dir.resolve("r.json"), model = dir.resolve("m.json");
    CliTest.Run r = speculate("--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--placement-out", plan.toString(),
        "--assignments", assign.toString(), "--json", json.toString(), "--model-out", model.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("local activations") && r.out().contains("prediction accuracy"), r.out());
    NpyArray a = NpyReader.read(assign);
    assertEquals("<i4", a.dtype());
    assertArrayEquals(new int[] {400, 4}, a.shape());
    for (int t = 0; t < 400; t++) assertEquals(t * 4 / 400, a.data()[t * 4], "layer 0 is home");
    JsonNode j = new ObjectMapper().readTree(json.toFile());
    assertTrue(j.path("local_activation_rate").path("speculative").asDouble() > j.path("local_activation_rate").path("home").asDouble(), j.toString());
    assertTrue(j.path("tokens_per_rank_max_over_mean").path("speculative").asDouble() <= 1.1 + 1e-9, j.toString());
    assertEquals(4, PlacementReader.read(plan, 4, 16).layers());
    assertEquals(4, AffinityModel.read(model).layers());
    assertEquals(List.of("a.npy", "eval.npy", "m.json", "p.json", "r.json", "train.npy"), files(), "no temp files left");

    // The placement written is the placement read: same figures.
    CliTest.Run again = speculate("--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--placement", plan.toString());
    assertEquals(0, again.code(), again.err());
    assertEquals(r.out().lines().skip(1).toList(), again.out().lines().skip(1).toList());
  }

  @Test
  void withNodesTheReportCountsRowsCrossingNodesAndTheDefaultObjectiveKeepsThemDown() throws IOException {
    JsonNode[] j = new JsonNode[3];
    String[][] extra = {{"--nodes", "1"}, {"--nodes", "2", "--speculate-objective", "ranks"}, {"--nodes", "2"}};
    for (int i = 0; i < 3; i++) {
      Path json = dir.resolve("r" + i + ".json");
      List<String> a = new ArrayList<>(List.of("--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--json", json.toString()));
      a.addAll(List.of(extra[i]));
      CliTest.Run r = speculate(a.toArray(String[]::new));
      assertEquals(0, r.code(), r.err());
      assertEquals(i > 0, r.out().contains("cross-node rows, all"), r.out());
      j[i] = new ObjectMapper().readTree(json.toFile());
    }
    assertEquals("ranks", j[0].path("objective").asText());
    assertEquals("ranks", j[1].path("objective").asText());
    assertEquals("nodes", j[2].path("objective").asText(), "the default with nodes");
    assertEquals(j[0].path("cross_rank_rows"), j[1].path("cross_rank_rows"), "the rank objective does not look at nodes");
    assertEquals(0, j[0].path("cross_node_rows").path("home").path("dispatch").asLong());
    JsonNode ranks = j[1].path("cross_node_rows").path("speculative"), nodes = j[2].path("cross_node_rows").path("speculative");
    assertTrue(j[1].path("cross_node_rows").path("home").path("dispatch").asLong() > 0, j[1].toString());
    assertTrue(nodes.path("forward").asLong() < ranks.path("forward").asLong(), ranks + " vs " + nodes);
  }

  private void write(Path f, int[] shape, int[] data) throws IOException {
    try (OutputStream os = Files.newOutputStream(f)) {
      NpyWriter.write(os, shape, data);
    }
  }

  private void assertBad(String needle, String... args) throws IOException {
    List<String> before = files();
    List<String> a = new ArrayList<>(List.of(args));
    a.addAll(List.of("--assignments", dir.resolve("out.npy").toString(), "--json", dir.resolve("out.json").toString()));
    CliTest.Run r = speculate(a.toArray(String[]::new));
    assertEquals(2, r.code(), r.out() + r.err());
    assertTrue(r.err().contains(needle), "expected '" + needle + "' in: " + r.err());
    assertEquals(1, r.err().lines().count(), r.err());
    assertEquals(before, files(), "no output file");
  }

  @Test
  void badInputIsOneLineAndExitCode2() throws IOException {
    Path threeLayers = dir.resolve("three.npy");
    write(threeLayers, new int[] {2, 3, 2}, new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    assertBad("3 layers", "--train", train.toString(), "--eval", threeLayers.toString(), "--gpus", "4");

    Path moreExperts = dir.resolve("wide.npy");
    write(moreExperts, new int[] {1, 4, 2}, new int[] {0, 1, 2, 3, 4, 5, 6, 31});
    assertBad("32 experts", "--train", train.toString(), "--eval", moreExperts.toString(), "--gpus", "4");
    assertBad("31", "--train", train.toString(), "--eval", moreExperts.toString(), "--gpus", "4", "--experts", "16");

    Path empty = dir.resolve("empty.npy");
    write(empty, new int[] {0, 4, 2}, new int[0]);
    assertBad("empty", "--train", empty.toString(), "--eval", eval.toString(), "--gpus", "4");

    Path other = dir.resolve("other.json");
    Files.writeString(other, "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]]}");
    assertBad("1 layers", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--placement", other.toString());
    Path twelve = dir.resolve("twelve.json");
    Files.writeString(twelve, "{\"physical_to_logical_map\": " + "[[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1]]".repeat(1).replace("]]", "],"
        + "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1],[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1],[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1]]") + "}");
    assertBad("slots (18) must be a multiple of gpus (4)", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--placement", twelve.toString());
    assertBad("--replicas 18", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--replicas", "18");
    assertBad("--nodes 3 does not divide --gpus 4", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--nodes", "3");
    assertBad("--nodes 0 does not divide --gpus 4", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--nodes", "0");
    assertBad("--speculate-objective both: want ranks or nodes", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4",
        "--speculate-objective", "both");
    assertBad("--gpus must be positive", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "0");
    assertBad("no such file", "--train", dir.resolve("missing.npy").toString(), "--eval", eval.toString(), "--gpus", "4");
    assertBad("exclude each other", "--train", train.toString(), "--eval", eval.toString(), "--gpus", "4", "--placement", other.toString(),
        "--placement-out", dir.resolve("x.json").toString());
  }
}
