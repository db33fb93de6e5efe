package io.moeyard.placement.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.placement.trace.NpyWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class CliTest {
  @TempDir Path dir;
  Path trace;
  Path out;

  record Run(int code, String out, String err) {}

  static Run run(Object command, String... args) {
    StringWriter o = new StringWriter(), e = new StringWriter();
    CommandLine cl = new CommandLine(command);
    cl.setOut(new PrintWriter(o));
    cl.setErr(new PrintWriter(e));
    int code = cl.execute(args);
    return new Run(code, o.toString(), e.toString());
  }

  @BeforeEach
  void synthTrace() {
    trace = dir.resolve("synth.npy");
    out = dir.resolve("plan.json");
    Run r = run(new TraceCommand(), "synth", "--layers", "4", "--experts", "16", "--topk", "2", "--tokens", "600",
        "--skew", "0.9", "--affinity", "0.6", "--seed", "11", "--out", trace.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("600 tokens"), r.out());
  }

  private Run plan(String... extra) {
    List<String> a = new ArrayList<>(List.of("--trace", trace.toString(), "--out", out.toString()));
    a.addAll(List.of(extra));
    return run(new PlanCommand(), a.toArray(String[]::new));
  }

  @Test
  void compareWritesThePlanAndTheTable() throws IOException {
    Run r = plan("--gpus", "4", "--nodes", "2", "--replicas", "20", "--compare", "--format", "eplb", "--per-layer",
        "--time-limit", "2", "--workers", "1");
    assertEquals(0, r.code(), r.err());
    // 3 algorithms x 4 layers of per-layer rows under their header.
    assertTrue(r.out().contains("x-node ->"), r.out());
    assertEquals(12, r.out().lines().filter(l -> l.matches("(trivial|eplb|ilp)\\s+\\d+\\s+.*")).count(), r.out());
    assertTrue(r.out().contains("trivial") && r.out().contains("eplb"), r.out());
    JsonNode j = new ObjectMapper().readTree(out.toFile());
    assertEquals(4, j.get("phy2log").size());
    assertEquals(20, j.get("phy2log").get(0).size());
    assertTrue(j.has("log2phy") && j.has("logcnt"));
    try (Stream<Path> s = Files.list(dir)) {
      assertEquals(2, s.count(), "only the trace and the plan, no temp files");
    }
  }

  @Test
  void replicaRuleChangesTheScoringAndIsValidated() throws IOException {
    Run uniform = plan("--gpus", "4", "--nodes", "2", "--replicas", "24", "--algorithm", "eplb", "--replica-rule", "uniform");
    Run nearest = plan("--gpus", "4", "--nodes", "2", "--replicas", "24", "--algorithm", "eplb");
    assertEquals(0, uniform.code(), uniform.err());
    assertEquals(0, nearest.code(), nearest.err());
    assertTrue(uniform.out().contains("--replica-rule uniform"), uniform.out());
    assertTrue(nearest.out().contains("--replica-rule nearest"), nearest.out());
    // 8 redundant slots: some replicated pairs are local under nearest but only partly under uniform
    String u = uniform.out().lines().filter(l -> l.startsWith("eplb")).findFirst().orElseThrow();
    String n = nearest.out().lines().filter(l -> l.startsWith("eplb")).findFirst().orElseThrow();
    assertTrue(!u.equals(n), u + "\n" + n);
    Files.delete(out);
    expectBad(plan("--gpus", "4", "--replica-rule", "random"), "--replica-rule random is not one of uniform, nearest");
  }

  @Test
  void evalTraceAndVllmAscendFormat() throws IOException {
    Path other = dir.resolve("other.npy");
    assertEquals(0, run(new TraceCommand(), "synth", "--layers", "4", "--experts", "16", "--topk", "2", "--tokens", "300",
        "--seed", "12", "--out", other.toString()).code());
    Run r = plan("--gpus", "4", "--replicas", "16", "--algorithm", "trivial", "--format", "vllm-ascend",
        "--eval-trace", other.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("scored on (not planned on)"), r.out());
    JsonNode j = new ObjectMapper().readTree(out.toFile());
    assertEquals(4, j.get("moe_layer_count").asInt());
  }

  @Test
  void loadOnlyTraceWorksForEplb() throws IOException {
    Path lc = dir.resolve("lc.json");
    Files.writeString(lc, "{\"logical_count\": [[5, 1, 1, 1], [1, 1, 1, 9]]}");
    Run r = run(new PlanCommand(), "--trace", lc.toString(), "--gpus", "2", "--replicas", "6", "--compare", "--time-limit", "2",
        "--workers", "1", "--out", out.toString());
    // ilp runs without affinity terms on a load-only trace and still writes its row.
    assertTrue(r.out().lines().anyMatch(l -> l.startsWith("ilp ")) || !IlpPlannerBridge.available(), r.out());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("load-only"), r.out());
    assertTrue(Files.exists(out));
  }

  @Test
  void hierarchicalEplbThroughTheCliMatchesTheLibrary() throws IOException {
    Run r = plan("--gpus", "4", "--nodes", "2", "--replicas", "24", "--groups", "4", "--algorithm", "eplb");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("groups 4"), r.out());
    JsonNode j = new ObjectMapper().readTree(out.toFile()).get("physical_to_logical_map");
    var t = io.moeyard.placement.trace.Traces.load(trace, 0);
    int[][] expected = io.moeyard.placement.eplb.Eplb.rebalance(t.loads(), 24, 4, 2, 4).phy2log();
    for (int l = 0; l < expected.length; l++) {
      for (int p = 0; p < 24; p++) assertEquals(expected[l][p], j.get(l).get(p).asInt(), "layer " + l + " slot " + p);
    }
  }

  @Test
  void traceStatsHeadroom() {
    Run r = run(new TraceCommand(), "stats", trace.toString(), "--top", "1", "--headroom", "2,4");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("top-5 successor share"), r.out());
    for (String g : new String[] {"2", "4"}) {
      String line = r.out().lines().filter(l -> l.startsWith("headroom, " + g + " groups")).findFirst().orElseThrow();
      double cross = Double.parseDouble(line.replaceAll(".*: ([0-9.]+)% of transitions.*", "$1"));
      double random = 100.0 * (Integer.parseInt(g) - 1) / Integer.parseInt(g);
      assertTrue(cross < random, "the search beats a random split on an affine trace: " + line);
    }
    expectBad(run(new TraceCommand(), "stats", trace.toString(), "--headroom", "99"), "--headroom 99 is not in [1, experts = 16]");
  }

  @Test
  void traceStats() {
    Run r = run(new TraceCommand(), "stats", trace.toString(), "--top", "2");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("imbalance"), r.out());
    assertTrue(r.out().contains("->"), r.out());
  }

  @Test
  void badInputExitsTwoWithOneLineAndNoFile() throws IOException {
    Path bad = dir.resolve("bad.npy");
    try (var os = Files.newOutputStream(bad)) {
      NpyWriter.write(os, new int[] {2, 1, 2}, new int[] {0, 1, 70, 2});
    }
    Path empty = Files.createFile(dir.resolve("empty.npy"));
    Path garbage = dir.resolve("garbage.npy");
    Files.writeString(garbage, "not a trace");
    expectBad(run(new PlanCommand(), "--trace", bad.toString(), "--experts", "64", "--gpus", "4", "--out", out.toString()),
        "expert id 70 at token 1");
    expectBad(plan("--gpus", "4", "--replicas", "18"), "--replicas 18 is not a multiple of --gpus 4");
    expectBad(plan("--gpus", "6", "--nodes", "4"), "--gpus 6 is not a multiple of --nodes 4");
    expectBad(plan("--gpus", "4", "--replicas", "8"), "fewer slots than the 16 experts");
    expectBad(plan("--gpus", "4", "--algorithm", "magic"), "--algorithm magic");
    expectBad(plan("--gpus", "4", "--format", "yaml"), "unknown format 'yaml'");
    expectBad(plan("--gpus", "4", "--groups", "3", "--nodes", "1"), "--groups 3 does not divide the 16 experts");
    expectBad(run(new PlanCommand(), "--trace", empty.toString(), "--gpus", "4", "--out", out.toString()), "empty");
    expectBad(run(new PlanCommand(), "--trace", garbage.toString(), "--gpus", "4", "--out", out.toString()), "neither");
    expectBad(run(new PlanCommand(), "--trace", dir.resolve("missing.npy").toString(), "--gpus", "4", "--out", out.toString()),
        "no such file");
    expectBad(run(new PlanCommand(), "--trace", trace.toString(), "--gpus", "4", "--out", dir.resolve("no/dir/p.json").toString()),
        "does not exist");
    expectBad(plan("--gpus", "4", "--preset", "deepseek-v3"), "preset deepseek-v3 has 58 x 256");
    expectBad(run(new TraceCommand(), "stats", empty.toString()), "empty");
    expectBad(run(new TraceCommand(), "synth", "--layers", "2", "--out", dir.resolve("s.npy").toString()), "--preset NAME or all of");
    expectBad(run(new TraceCommand(), "synth", "--preset", "nope", "--out", dir.resolve("s.npy").toString()), "unknown preset");
    assertFalse(Files.exists(dir.resolve("s.npy")));
    // picocli's own usage errors use the same exit code.
    assertEquals(2, run(new PlanCommand(), "--trace", trace.toString()).code());
  }

  @Test
  void ilpWithoutThePlannerIsAClearError() {
    Assumptions.assumeFalse(IlpPlannerBridge.available(), "the ilp planner is built in: nothing to refuse");
    expectBad(plan("--gpus", "4", "--algorithm", "ilp"), "ilp planner not built in this version");
  }

  @Test
  void ilpPlansThroughTheCliNoWorseThanEplb() throws IOException {
    Assumptions.assumeTrue(IlpPlannerBridge.available(), "the ilp planner is not built in");
    Run r = plan("--gpus", "4", "--nodes", "2", "--replicas", "20", "--compare", "--algorithm", "ilp",
        "--time-limit", "4", "--workers", "1");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.err().contains("ilp"), "progress lines on stderr: " + r.err());
    String ilpRow = r.out().lines().filter(l -> l.startsWith("ilp ")).findFirst().orElseThrow(() -> new AssertionError(r.out()));
    String eplbRow = r.out().lines().filter(l -> l.startsWith("eplb ")).findFirst().orElseThrow();
    assertTrue(Files.exists(out));
    assertTrue(ilpRow.contains("gap"), "ilp reports its gap to the bound: " + ilpRow);
    // Cross-GPU transitions (7th column from the right): the planner's warm start is EPLB's plan
    // and it may only lower the affinity cost, so it must not come out far worse than EPLB.
    double ilpX = Double.parseDouble(column(ilpRow, 7)), eplbX = Double.parseDouble(column(eplbRow, 7));
    assertTrue(ilpX <= eplbX * 1.02, "cross-GPU transitions ilp " + ilpX + " vs eplb " + eplbX + "\n" + r.out());
  }

  @Test
  void unseenWorkloadPlansBalanceOnTheForecast() throws IOException {
    Assumptions.assumeTrue(IlpPlannerBridge.available(), "the ilp planner is not built in");
    Path other = dir.resolve("other.npy");
    assertEquals(0, run(new TraceCommand(), "synth", "--layers", "4", "--experts", "16", "--topk", "2", "--tokens", "600",
        "--skew", "0.9", "--affinity", "0.6", "--seed", "12", "--out", other.toString()).code());
    Run r = plan("--trace", other.toString(), "--gpus", "4", "--nodes", "2", "--replicas", "20", "--algorithm", "ilp",
        "--robust", "unseen", "--locality", "none", "--time-limit", "2", "--workers", "1", "--format", "eplb");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.err().contains("unseen-workload forecast") && r.err().contains("--locality none"), r.err());
    // balance only, for an unseen workload: EPLB's packing of the forecast, GPUs possibly relabelled
    var loads = new double[][][] {io.moeyard.placement.trace.Traces.load(trace, 0).loads(),
        io.moeyard.placement.trace.Traces.load(other, 0).loads()};
    int[][] eplb = io.moeyard.placement.eplb.Eplb.rebalance(
        io.moeyard.placement.plan.LoadForecast.of(loads).loads(), 20, 1, 2, 4).phy2log();
    JsonNode j = new ObjectMapper().readTree(out.toFile()).get("phy2log");
    for (int l = 0; l < 4; l++) {
      int[] ours = new int[20];
      for (int p = 0; p < 20; p++) ours[p] = j.get(l).get(p).asInt();
      assertEquals(gpuSets(eplb[l]), gpuSets(ours), "layer " + l);
    }
    Files.delete(out);
    Run eplbOnly = plan("--trace", other.toString(), "--gpus", "4", "--nodes", "2", "--replicas", "20", "--algorithm", "eplb",
        "--robust", "unseen", "--time-limit", "2");
    assertEquals(0, eplbOnly.code(), eplbOnly.err());
    assertTrue(eplbOnly.err().contains("warning: --robust, --time-limit only change --algorithm ilp; --algorithm eplb ignores them"),
        eplbOnly.err());
    Run quiet = plan("--trace", other.toString(), "--gpus", "4", "--nodes", "2", "--replicas", "20", "--algorithm", "eplb");
    assertFalse(quiet.err().contains("warning"), quiet.err());
    Files.delete(out);
    expectBad(plan("--gpus", "4", "--robust", "unseen"), "--robust unseen needs at least 2 --trace workloads");
    expectBad(plan("--gpus", "4", "--robust", "mean"), "--robust mean is not one of worst, unseen");
    expectBad(plan("--gpus", "4", "--locality", "rack"), "--locality rack is not one of gpu, node, none");
    expectBad(plan("--gpus", "4", "--balance-slack", "2"), "--balance-slack must be in [0, 1], got 2.0");
  }

  /** The multiset of expert sets per GPU (5 slots each), ignoring GPU order and slot order. */
  private static java.util.Map<String, Long> gpuSets(int[] row) {
    java.util.Map<String, Long> m = new java.util.TreeMap<>();
    for (int g = 0; g < 4; g++) {
      int[] s = java.util.Arrays.copyOfRange(row, g * 5, g * 5 + 5);
      java.util.Arrays.sort(s);
      m.merge(java.util.Arrays.toString(s), 1L, Long::sum);
    }
    return m;
  }

  private static String column(String row, int fromRight) {
    String[] f = row.trim().split("\\s+");
    return f[f.length - fromRight];
  }

  private void expectBad(Run r, String part) {
    assertEquals(2, r.code(), "exit code; stderr: " + r.err() + " stdout: " + r.out());
    assertTrue(r.err().contains(part), "stderr should name the problem (" + part + "): " + r.err());
    assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
    assertFalse(r.err().contains("Exception"), r.err());
    assertFalse(Files.exists(out), "no output file after bad input");
  }
}
