package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.testkit.NaiveReference;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CommandLineTest {
  @TempDir Path dir;

  private static int run(String... args) {
    return Moeyard.commandLine().execute(args);
  }

  @Test
  void benchWritesTheDocumentedJsonAndVerifies() throws Exception {
    Path json = dir.resolve("bench.json");
    for (String dt : new String[] {"bf16", "fp8"}) {
      int rc = run("bench", "--ranks", "3", "--tokens", "40", "--hidden", "128", "--experts", "6", "--topk", "2",
          "--dtype", dt, "--iters", "2", "--warmup", "0", "--json", json.toString());
      assertEquals(0, rc, dt);
      JsonNode root = new ObjectMapper().readTree(json.toFile());
      assertEquals(3, root.path("config").path("ranks").asInt());
      assertEquals(dt, root.path("config").path("dtype").asText());
      for (String op : new String[] {"dispatch", "combine"}) {
        for (String path : new String[] {"fused", "unfused"}) {
          assertTrue(root.path(op).path(path).path("median_us").asDouble() > 0, op + " " + path);
          assertTrue(root.path(op).path(path).path("gbps").asDouble() > 0, op + " " + path);
        }
      }
      assertTrue(root.path("copy_gbps").asDouble() > 0);
      assertTrue(root.path("verified").asBoolean());
    }
  }

  /**
   * Every description is a valid format string: picocli formats them, and prints one it cannot
   * format (a bare '%') raw, with a warning in the middle of the user's help.
   */
  @Test
  void everyHelpTextIsAFormatString() {
    java.util.ArrayDeque<picocli.CommandLine> todo = new java.util.ArrayDeque<>(List.of(Moeyard.commandLine()));
    int seen = 0;
    while (!todo.isEmpty()) {
      picocli.CommandLine c = todo.pop();
      todo.addAll(c.getSubcommands().values());
      picocli.CommandLine.Model.CommandSpec spec = c.getCommandSpec();
      // the annotations' own text: the spec's getters return it with "%%" already unescaped
      List<String> texts = new ArrayList<>();
      for (Class<?> k = spec.userObject().getClass(); k != null && k != Object.class; k = k.getSuperclass()) {
        picocli.CommandLine.Command cmd = k.getAnnotation(picocli.CommandLine.Command.class);
        if (cmd != null) {
          texts.addAll(List.of(cmd.description()));
          texts.addAll(List.of(cmd.footer()));
          texts.addAll(List.of(cmd.header()));
        }
        for (java.lang.reflect.Field f : k.getDeclaredFields()) {
          picocli.CommandLine.Option o = f.getAnnotation(picocli.CommandLine.Option.class);
          if (o != null) texts.addAll(List.of(o.description()));
          picocli.CommandLine.Parameters p = f.getAnnotation(picocli.CommandLine.Parameters.class);
          if (p != null) texts.addAll(List.of(p.description()));
        }
      }
      for (String t : texts) {
        try {
          String.format(t, new Object[0]);
        } catch (java.util.IllegalFormatException e) {
          throw new AssertionError(spec.qualifiedName() + ": not a format string (" + e + "): " + t);
        }
        seen++;
      }
    }
    assertTrue(seen > 50, "texts seen: " + seen);
  }

  @Test
  void benchRejectsBadOptionsWithExitCode2() {
    assertEquals(2, run("bench", "--experts", "10", "--ranks", "4"));
    assertEquals(2, run("bench", "--dtype", "int4"));
    assertEquals(2, run("bench", "--preset", "gpt-5"));
    assertEquals(2, run("bench", "--dtype", "fp8", "--hidden", "100"));
  }

  @Test
  void layoutMatchesABruteForceEnumeration() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    ObjectMapper om = new ObjectMapper();
    for (int trial = 0; trial < 5; trial++) {
      int ranks = 1 + rnd.nextInt(4);
      int experts = ranks * (1 + rnd.nextInt(3));
      int topk = 1 + rnd.nextInt(Math.min(3, experts));
      List<List<int[]>> idx = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        List<int[]> rows = new ArrayList<>();
        int tokens = rnd.nextInt(6);
        for (int t = 0; t < tokens; t++) {
          int[] row = new int[topk];
          java.util.Arrays.fill(row, -1);
          for (int k = 0; k < topk; k++) {
            int e = rnd.nextInt(experts);
            boolean dup = false;
            for (int j = 0; j < k; j++) dup |= row[j] == e;
            row[k] = dup || rnd.nextInt(5) == 0 ? -1 : e;
          }
          rows.add(row);
        }
        idx.add(rows);
      }
      Path in = dir.resolve("routing.json");
      Path out = dir.resolve("layout.json");
      om.writeValue(in.toFile(), java.util.Map.of("ranks", ranks, "experts", experts, "topk_idx", idx));
      assertEquals(0, run("layout", "--routing", in.toString(), "--json", out.toString()));
      JsonNode got = om.readTree(out.toFile()).path("ranks");
      int spr = experts / ranks;
      int[] tokens = new int[ranks];
      int[][] flat = new int[ranks][];
      for (int r = 0; r < ranks; r++) {
        tokens[r] = idx.get(r).size();
        flat[r] = idx.get(r).stream().flatMapToInt(java.util.Arrays::stream).toArray();
      }
      NaiveReference ref = new NaiveReference(ExpertMap.trivial(Topology.singleNode(ranks), experts), flat, tokens, topk);
      for (int d = 0; d < ranks; d++) {
        List<String> want = new ArrayList<>();
        for (int i = 0; i < ref.rowsReceivedBy(d); i++) {
          int r = ref.sourceRank(d, i);
          int t = ref.sourceToken(d, i);
          want.add("[" + ref.slot(r, t, ref.sourceK(d, i)) % spr + "," + r + "," + t + "]");
        }
        List<String> have = new ArrayList<>();
        got.get(d).path("rows").forEach(n -> have.add(n.toString()));
        assertEquals(want, have, seed + " rank " + d);
      }
    }
  }

  @Test
  void layoutRejectsMalformedFilesWithExitCode2() throws Exception {
    Path in = dir.resolve("bad.json");
    Files.writeString(in, "{\"ranks\": 2, \"experts\": 3, \"topk_idx\": [[], []]}");
    PrintStream old = System.err;
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    System.setErr(new PrintStream(err));
    try {
      assertEquals(2, run("layout", "--routing", in.toString()));
      Files.writeString(in, "{not json");
      assertEquals(2, run("layout", "--routing", in.toString()));
    } finally {
      System.setErr(old);
    }
    assertTrue(err.toString().contains("\"experts\" (3) must be a positive multiple of \"ranks\" (2)"), err.toString());
    assertFalse(err.toString().contains("Exception in thread"));
  }
}
