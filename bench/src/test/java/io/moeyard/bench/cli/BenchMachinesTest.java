package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.engine.shm.ShmFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code moeyard bench --procs N --machines K}: one bench command per machine, here two on this
 * host under different machine names, so that their ranks share no memory (a
 * {@code ClusterTransport}), make one world whose fused node-level path is verified and timed;
 * machine 0's rank 0 prints the table and writes the JSON.
 */
class BenchMachinesTest {
  static List<String> benchCommand(String... args) {
    String javaExe = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    List<String> cmd = new ArrayList<>(List.of(javaExe));
    cmd.addAll(RankProcesses.JVM_OPTIONS);
    cmd.addAll(List.of("-cp", cp, Moeyard.class.getName(), "bench"));
    cmd.addAll(List.of(args));
    return cmd;
  }

  static String finish(Process p) throws IOException, InterruptedException {
    byte[] out;
    try (var in = p.getInputStream()) {
      out = in.readAllBytes();
    }
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("bench hung:\n" + new String(out, StandardCharsets.UTF_8));
    }
    return new String(out, StandardCharsets.UTF_8);
  }

  @Test
  void twoMachinesRunOneVerifiedBench(@TempDir Path dir) throws Exception {
    int port;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path json = dir.resolve("bench.json");
    Process[] m = new Process[2];
    for (int i = 1; i >= 0; i--) {
      List<String> args = new ArrayList<>(List.of("--procs", "2", "--machines", "2", "--machine-rank", Integer.toString(i),
          "--master-addr", "127.0.0.1", "--master-port", Integer.toString(port), "--machine-name", "pretend-" + i,
          "--tokens", "64", "--hidden", "128", "--experts", "16", "--topk", "4", "--iters", "3", "--warmup", "0"));
      if (i == 0) args.addAll(List.of("--json", json.toString()));
      args.addAll(List.of("--routing-out", dir.resolve("routing-" + i + ".npy").toString()));
      ProcessBuilder pb = new ProcessBuilder(benchCommand(args.toArray(String[]::new))).redirectErrorStream(true);
      pb.environment().remove("MOEYARD_JVM_OPTS");
      m[i] = pb.start();
    }
    String out0 = finish(m[0]);
    String out1 = finish(m[1]);
    String both = out0 + "\n--- machine 1:\n" + out1;
    assertEquals(0, m[0].exitValue(), both);
    assertEquals(0, m[1].exitValue(), both);
    assertTrue(out0.contains("4 rank processes on 2 machines"), both);
    assertTrue(out0.contains("2 nodes x 2 ranks, node path: relay"), both);
    assertTrue(out0.contains("dispatch unfused   not run"), both);
    assertTrue(out0.contains("verified: yes (fused == reference, bit for bit (the unfused baseline does not run across machines))"), both);
    JsonNode root = new ObjectMapper().readTree(Files.readString(json));
    assertTrue(root.get("verified").asBoolean(), both);
    // the world's routing, once: by machine 0, as its JSON
    assertTrue(Files.size(dir.resolve("routing-0.npy")) > 0, both);
    assertTrue(Files.notExists(dir.resolve("routing-1.npy")), "machine 1 wrote --routing-out too");
    assertTrue(root.get("dispatch").get("unfused").isNull(), root.toString());
    assertTrue(root.get("dispatch").get("fused").get("median_us").asDouble() > 0, root.toString());
    assertEquals(4, root.get("config").get("ranks").asInt());
    assertEquals(2, root.get("config").get("nodes").asInt());
    // relay: at most one row per token and remote node (4 ranks x 64 tokens x 1 remote node)
    long crossed = root.get("rows").get("remote_node").asLong();
    assertTrue(crossed > 0 && crossed <= 4 * 64, "rows crossing nodes: " + crossed);
    assertTrue(ShmFiles.list(ProcessHandle.current().pid()).isEmpty(), "shared-memory files left behind");
  }

  @Test
  void badMachineOptionsExitWith2() {
    String[][] bad = {
      {"--procs", "2", "--machines", "2", "--master-addr", "h"},                             // no port
      {"--procs", "2", "--machines", "2", "--master-port", "29500"},                          // no address
      {"--procs", "2", "--machines", "2", "--machine-rank", "2", "--master-addr", "h", "--master-port", "29500"},
      {"--procs", "2", "--machines", "0"},
      {"--procs", "2", "--machines", "2", "--ranks", "2", "--master-addr", "h", "--master-port", "29500"},
      {"--procs", "2", "--machine-name", " "},
      {"--machines", "2", "--master-addr", "h", "--master-port", "29500"},                 // no --procs
      {"--procs", "2", "--machines", "2", "--master-addr", "h", "--master-port", "29500", "--node-path", "direct"},
    };
    for (String[] args : bad) {
      List<String> all = new ArrayList<>(List.of("bench"));
      all.addAll(List.of(args));
      assertEquals(2, Moeyard.commandLine().execute(all.toArray(String[]::new)), String.join(" ", all));
    }
  }
}
