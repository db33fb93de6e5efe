package io.moeyard.bench.cli;

import static io.moeyard.bench.cli.BenchMachinesTest.benchCommand;
import static io.moeyard.bench.cli.BenchMachinesTest.finish;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.bench.run.LayerRunTest;
import io.moeyard.engine.shm.ShmFiles;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.placement.speculate.AffinityModel;
import io.moeyard.placement.trace.NpyWriter;
import io.moeyard.placement.trace.RoutingTrace;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code moeyard bench --layers --speculate} with rank processes: over shared memory
 * ({@code --procs}) and on two pretend machines ({@code --procs --machines 2}, two bench commands
 * on this host under different machine names, as {@link BenchMachinesTest} rehearses them). The
 * processes' table must equal the rank threads' on the same inputs: the same rows counted, the
 * same digests of the final rows, identical outputs.
 */
class BenchLayersProcsTest {
  private static final int LAYERS = 5;
  private static final int EXPERTS = 12;

  @TempDir Path dir;

  /** One case's files: a chain trace, and an affinity model learned on another trace of the same kind. */
  private record Case(TestSeed seed, Path trace, Path model, int tokensPerRank) {}

  private Case writeCase(int ranks) throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    int topk = 1 + rnd.nextInt(3);
    int tokensPerRank = 8 + rnd.nextInt(12);
    RoutingTrace train = LayerRunTest.chainTrace(rnd, 300, LAYERS, topk, EXPERTS);
    RoutingTrace eval = LayerRunTest.chainTrace(rnd, ranks * tokensPerRank, LAYERS, topk, EXPERTS);
    Path trace = dir.resolve("trace.npy");
    try (OutputStream out = Files.newOutputStream(trace)) {
      NpyWriter.write(out, new int[] {eval.tokens(), LAYERS, topk}, eval.ids());
    }
    Path model = dir.resolve("model.json");
    AffinityModel.learn(List.of(train)).write(model);
    return new Case(seed, trace, model, tokensPerRank);
  }

  /** The layer run's options of {@code c} (layers 1..LAYERS-1), less how the ranks run. */
  private static List<String> layerArgs(Case c) {
    return layerArgs(c, LAYERS);
  }

  /** The same for layers 1..to-1. */
  private static List<String> layerArgs(Case c, int to) {
    return new ArrayList<>(List.of("--trace", c.trace().toString(), "--experts", Integer.toString(EXPERTS), "--layers",
        "1:" + to, "--tokens", Integer.toString(c.tokensPerRank()), "--hidden", "24", "--speculate", c.model().toString(),
        "--iters", "1"));
  }

  /** Runs {@code bench} with these arguments in this JVM, captured: {exit code, stdout, stderr}. */
  private static Object[] inJvm(List<String> args) {
    List<String> all = new ArrayList<>(List.of("bench"));
    all.addAll(args);
    return CudaCommandsTest.run(all.toArray(String[]::new));
  }

  /** The rank threads' JSON for {@code c} on {@code ranks} ranks in {@code nodes} nodes. */
  private JsonNode threads(Case c, int to, int ranks, int nodes) throws Exception {
    Path json = dir.resolve("threads.json");
    List<String> args = layerArgs(c, to);
    args.addAll(List.of("--ranks", Integer.toString(ranks), "--nodes", Integer.toString(nodes), "--json", json.toString()));
    Object[] r = inJvm(args);
    assertEquals(0, r[0], c.seed() + "\n" + r[1] + r[2]);
    return new ObjectMapper().readTree(Files.readString(json));
  }

  private static Process start(List<String> args) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(benchCommand(args.toArray(String[]::new))).redirectErrorStream(true);
    pb.environment().remove("MOEYARD_JVM_OPTS");
    return pb.start();
  }

  /** Both runs' rows and final-row digests, and the verdict, equal; only the times and the world differ. */
  private static void assertSameFigures(JsonNode want, JsonNode got, String what) {
    for (String mode : new String[] {"home", "speculative"}) {
      assertEquals(want.get(mode).get("rows"), got.get(mode).get("rows"), what + ": " + mode + " rows");
      assertEquals(want.get(mode).get("final_rows_digest"), got.get(mode).get("final_rows_digest"), what + ": " + mode + " digest");
    }
    assertTrue(got.get("identical").asBoolean(), what);
    assertEquals(want.get("home").get("final_rows_digest"), want.get("speculative").get("final_rows_digest"), what);
    for (String k : new String[] {"ranks", "nodes", "tokens", "hidden", "from_layer", "to_layer"}) {
      assertEquals(want.get("config").get(k), got.get("config").get(k), what + ": config " + k);
    }
    assertTrue(got.get("speculative").get("rows").get("forward_remote").asLong() > 0, what + ": the shuffle moved no token");
  }

  @Test
  void rankProcessesMatchRankThreadsBitForBit() throws Exception {
    Case c = writeCase(3);
    JsonNode want = threads(c, LAYERS, 3, 1);
    Path json = dir.resolve("procs.json");
    List<String> args = layerArgs(c);
    args.addAll(List.of("--procs", "3", "--json", json.toString()));
    Process p = start(args);
    String out = finish(p);
    String what = c.seed() + "\n" + out;
    assertEquals(0, p.exitValue(), what);
    assertTrue(out.contains("ranks: 3 rank processes over shared memory"), what);
    assertTrue(out.contains("outputs with and without speculation: identical, bit for bit"), what);
    JsonNode got = new ObjectMapper().readTree(Files.readString(json));
    assertEquals("3 rank processes over shared memory", got.get("config").get("world").asText(), what);
    assertEquals("3 rank threads of one JVM", want.get("config").get("world").asText(), what);
    assertSameFigures(want, got, what);
    assertTrue(ShmFiles.list(p.pid()).isEmpty(), "shared-memory files left behind");
  }

  @Test
  void aCorruptedRowOnAnotherRankIsReportedByRankZero() throws Exception {
    Case c = writeCase(2);
    Path json = dir.resolve("procs.json");
    List<String> args = layerArgs(c);
    args.addAll(List.of("--procs", "2", "--corrupt-final-row", "1", "--json", json.toString()));
    Process p = start(args);
    String out = finish(p);
    String what = c.seed() + "\n" + out;
    assertEquals(1, p.exitValue(), what);
    assertTrue(out.contains("outputs with and without speculation: DIFFERENT: 1 of " + 2 * c.tokensPerRank()
        + " tokens' final rows differ between the runs"), what);
    JsonNode got = new ObjectMapper().readTree(Files.readString(json));
    assertFalse(got.get("identical").asBoolean(), what);
    assertTrue(got.get("difference").asText().endsWith("(on rank 1)"), what);
    assertNotEquals(got.get("home").get("final_rows_digest"), got.get("speculative").get("final_rows_digest"), what);
  }

  @Test
  void twoMachinesMatchRankThreadsBitForBit() throws Exception {
    Case c = writeCase(4);
    // two layers: six JVMs start here, and the test stays short on a busy host
    JsonNode want = threads(c, 3, 4, 2);
    int port;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path json = dir.resolve("machines.json");
    Process[] m = new Process[2];
    for (int i = 1; i >= 0; i--) {
      List<String> args = layerArgs(c, 3);
      args.addAll(List.of("--procs", "2", "--machines", "2", "--machine-rank", Integer.toString(i), "--master-addr", "127.0.0.1",
          "--master-port", Integer.toString(port), "--machine-name", "pretend-" + i));
      if (i == 0) args.addAll(List.of("--json", json.toString()));
      m[i] = start(args);
    }
    String out0 = finish(m[0]);
    String out1 = finish(m[1]);
    String what = c.seed() + "\n" + out0 + "\n--- machine 1:\n" + out1;
    assertEquals(0, m[0].exitValue(), what);
    assertEquals(0, m[1].exitValue(), what);
    assertTrue(out0.contains("ranks: 4 rank processes on 2 machines"), what);
    JsonNode got = new ObjectMapper().readTree(Files.readString(json));
    assertSameFigures(want, got, what);
    // the relay crosses between the two nodes (one per machine) with messages: some rows did
    assertTrue(got.get("home").get("rows").get("remote_node").asLong() > 0, what);
  }

  @Test
  void machinesGivenDifferentTracesAreNamed() throws Exception {
    int tokensPerRank = 8;
    // the same shape, one expert id changed: only the trace's checksum tells them apart
    int[] ids = LayerRunTest.chainTrace(new SplittableRandom(1), 4 * tokensPerRank, LAYERS, 1, EXPERTS).ids();
    Path a = dir.resolve("a.npy");
    Path b = dir.resolve("b.npy");
    try (OutputStream out = Files.newOutputStream(a)) {
      NpyWriter.write(out, new int[] {ids.length / LAYERS, LAYERS, 1}, ids);
    }
    ids[ids.length - 1] = (ids[ids.length - 1] + 1) % EXPERTS;
    try (OutputStream out = Files.newOutputStream(b)) {
      NpyWriter.write(out, new int[] {ids.length / LAYERS, LAYERS, 1}, ids);
    }
    int port;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Process[] m = new Process[2];
    for (int i = 1; i >= 0; i--) {
      m[i] = start(List.of("--trace", (i == 0 ? a : b).toString(), "--experts", Integer.toString(EXPERTS), "--layers", "1:3",
          "--tokens", Integer.toString(tokensPerRank), "--hidden", "8", "--iters", "1", "--procs", "2", "--machines", "2",
          "--machine-rank", Integer.toString(i), "--master-addr", "127.0.0.1", "--master-port", Integer.toString(port),
          "--machine-name", "pretend-" + i));
    }
    String out0 = finish(m[0]);
    String out1 = finish(m[1]);
    String what = out0 + "\n--- machine 1:\n" + out1;
    assertEquals(2, m[0].exitValue(), what);
    assertEquals(2, m[1].exitValue(), what);
    assertTrue(out0.contains("ranks disagree on the configuration") && out0.contains("trace_crc32c="), what);
    assertFalse(out0.contains("trace="), what + ": the shapes are the same");
  }

  @Test
  void badOptionsExitWith2NamingTheValue() throws Exception {
    Case c = writeCase(2);
    String t = c.trace().toString();
    String e = Integer.toString(EXPERTS);
    Path otherModel = dir.resolve("other-model.json");
    AffinityModel.learn(List.of(LayerRunTest.chainTrace(new SplittableRandom(2), 50, LAYERS - 1, 1, EXPERTS))).write(otherModel);
    String[][] bad = {
      {"--layers needs --trace", "--procs", "2", "--layers", "1:4"},
      {"--speculate needs --layers", "--procs", "2", "--trace", t, "--experts", e, "--speculate", c.model().toString()},
      {"--layers 1:9", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:9"},
      {"--layers 3:2", "--procs", "2", "--trace", t, "--experts", e, "--layers", "3:2"},
      {"--backend cuda", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--backend", "cuda"},
      {"--routing-out", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--routing-out", dir.resolve("r.npy").toString()},
      {"--tokens 100000", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--tokens", "100000"},
      {"among 8 ranks", "--procs", "8", "--trace", t, "--experts", e, "--layers", "1:4", "--tokens", "1"},
      {"--speculate " + otherModel, "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--speculate", otherModel.toString()},
      {"--speculate " + c.trace(), "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--speculate", t},  // not a model
      {"--placement " + c.model(), "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--placement", c.model().toString()},
      {"--nodes must divide --procs (2), got 3", "--procs", "2", "--nodes", "3", "--trace", t, "--experts", e, "--layers", "1:4"},
      {"--node-path direct", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4", "--node-path", "direct"},
      {"--speculate-objective both: want ranks or nodes", "--procs", "2", "--nodes", "2", "--trace", t, "--experts", e, "--layers", "1:4",
          "--speculate", c.model().toString(), "--speculate-objective", "both"},
      {"--speculate-objective nodes needs --speculate", "--procs", "2", "--trace", t, "--experts", e, "--layers", "1:4",
          "--speculate-objective", "nodes"},
      {"--node-path direct", "--procs", "2", "--machines", "2", "--master-addr", "h", "--master-port", "29500", "--node-path", "direct",
          "--trace", t, "--experts", e, "--layers", "1:4"},
    };
    for (String[] b : bad) {
      List<String> args = List.of(b).subList(1, b.length);
      Object[] r = inJvm(args);
      String what = String.join(" ", args) + "\n" + r[1] + r[2];
      assertEquals(2, r[0], what);
      String err = ((String) r[2]).strip();
      assertEquals(1, err.lines().count(), what + ": one line");
      assertTrue(err.contains(b[0]), what + ": names " + b[0]);
    }
  }
}
