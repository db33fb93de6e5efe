package io.moeyard.bench.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bench/gpu/run.sh, rehearsed on the CPU ({@code MOEYARD_GPU_DRY_RUN=1}): the GPU machine returns at
 * most 8 files and gives one command a few minutes, so the script's step order, budget logic, exit
 * code and file count are checked here, where a mistake costs nothing.
 */
class GpuRunScriptTest {
  @TempDir Path out;

  private static final Path SCRIPT = Path.of("gpu", "run.sh").toAbsolutePath();

  /** Runs the script in dry-run mode with this JVM and this test's class path; returns its output. */
  private Result run(int budgetSeconds) throws IOException, InterruptedException {
    return run(budgetSeconds, Map.of());
  }

  private Result run(int budgetSeconds, Map<String, String> env) throws IOException, InterruptedException {
    String java = ProcessHandle.current().info().command().orElse("java");
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    ProcessBuilder pb = new ProcessBuilder("bash", SCRIPT.toString());
    pb.environment().put("OUT", out.toString());
    pb.environment().put("MOEYARD_GPU_DRY_RUN", "1");
    pb.environment().put("MOEYARD_GPU_JAVA", java);
    pb.environment().put("MOEYARD_GPU_CP", cp);
    pb.environment().put("MOEYARD_GPU_BUDGET_S", Integer.toString(budgetSeconds));
    pb.environment().remove("MOEYARD_GPU_STEPS");
    pb.environment().putAll(env);
    pb.redirectErrorStream(true);
    Path log = out.resolveSibling(out.getFileName() + ".log");
    pb.redirectOutput(log.toFile());
    Process p = pb.start();
    if (!p.waitFor(budgetSeconds + 120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("run.sh outlived its budget of " + budgetSeconds + " s:\n" + Files.readString(log));
    }
    return new Result(p.exitValue(), Files.readString(log));
  }

  private record Result(int exit, String output) {}

  /** The "step NAME: ..." lines of the summary, in order. */
  private static List<String> steps(String output) {
    List<String> steps = new ArrayList<>();
    Matcher m = Pattern.compile("(?m)^step ([\\w-]+): (.*)$").matcher(output);
    while (m.find()) steps.add(m.group(1) + ": " + m.group(2));
    return steps;
  }

  private List<String> files() throws IOException {
    try (Stream<Path> s = Files.list(out)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Test
  void dryRunRunsEveryStepInOrderAndReturnsAtMostEightFiles() throws Exception {
    Result r = run(330);
    List<String> steps = steps(r.output());
    assertEquals(0, r.exit(), "exit code; output:\n" + r.output());
    List<String> names = steps.stream().map(s -> s.substring(0, s.indexOf(':'))).toList();
    assertEquals(List.of("selftest", "bench", "torch", "sanitizer", "racecheck", "gpu-tests", "cuda-ipc", "nccl", "nccl-machines", "procs",
        "procs-machines", "esft-law",
        "sweep-8", "sweep-16", "sweep-64"),
        names, "step order; output:\n" + r.output());
    for (String s : steps) {
      String name = s.substring(0, s.indexOf(':'));
      if (List.of("selftest", "bench", "procs", "procs-machines", "sweep-8", "sweep-16", "sweep-64").contains(name)) {
        assertTrue(s.contains(": ok"), s + "\n" + r.output());
      }
    }
    List<String> files = files();
    assertTrue(files.size() <= 8, "at most 8 files come back from the GPU machine: " + files);
    assertTrue(files.containsAll(List.of("bench-deepseek-v3.json", "summary.txt", "logs.tgz",
        "bench-deepseek-v3-t8.json", "bench-deepseek-v3-t16.json", "bench-deepseek-v3-t64.json")), files.toString());
    for (String f : files) assertTrue(!new File(out.toFile(), f).isDirectory(), f + " is a folder");
    assertTrue(r.output().contains("moeyard selftest --backend cpu: 20 cases, 20 passed"), r.output());
    assertTrue(r.output().contains("rank processes (2 rank processes over shared memory"), r.output());
    assertTrue(r.output().contains("two pretend machines (2 rank processes on 2 machines"), r.output());
  }

  /**
   * bench/gpu/two-machines.sh with a stand-in for the bench command, which acts per machine rank
   * as {@code m0} and {@code m1} say (a line to print, then an exit code): returns the script's
   * exit code.
   */
  private int twoMachines(String m0, String m1) throws IOException, InterruptedException {
    Path fake = out.resolve("fake-bench.sh");
    Files.writeString(fake, """
        #!/usr/bin/env bash
        rank=; while [ $# -gt 0 ]; do [ "$1" = --machine-rank ] && rank=$2; shift; done
        if [ "$rank" = 0 ]; then %s; else %s; fi
        """.formatted(m0, m1));
    ProcessBuilder pb = new ProcessBuilder("bash", Path.of("gpu", "two-machines.sh").toAbsolutePath().toString(), "29999",
        out.resolve("m1.log").toString(), "bash", fake.toString(), "bench", "--procs", "2");
    pb.redirectErrorStream(true);
    pb.redirectOutput(out.resolve("two.log").toFile());
    Process p = pb.start();
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("two-machines.sh hung");
    }
    return p.exitValue();
  }

  /**
   * Exit 200 ("skipped") only where NCCL's set-up itself refused the world; a machine that dies
   * or never reaches NCCL's set-up (the others' wait for it ends at the timeout) is a failure.
   */
  @Test
  void twoMachinesIsSkippedOnlyWhenNcclRefusesTheWorld() throws Exception {
    assertEquals(0, twoMachines("echo ok", "exit 0"));
    assertEquals(3, twoMachines("exit 0", "exit 3"), "machine 1's failure");
    assertEquals(200, twoMachines("echo 'rank 0: ncclCommInitRankConfig failed: 5 (invalid usage)'; exit 1", "exit 1"),
        "NCCL refused several ranks of one GPU");
    assertEquals(1, twoMachines("echo 'rank 0 of 4: ncclCommInitRankConfig did not finish within 300 ms (a peer that never"
        + " made its call, or NCCL stuck on its network; NCCL cannot say which peer)'; exit 1", "kill -9 $$"),
        "machine 1 was killed: machine 0's wait for its ranks is not NCCL refusing the world");
  }

  @Test
  void stepsTheBudgetCannotHoldAreSkippedNotFailed() throws Exception {
    // 50 s: the budget keeps 12 s back for the table, the selftest (it needs 30 s) runs, and the
    // bench (40 s) and the largest sweep (100 s) no longer fit
    Result r = run(50);
    List<String> steps = steps(r.output());
    assertEquals(0, r.exit(), "skipped steps are not failures; output:\n" + r.output());
    assertTrue(steps.get(0).startsWith("selftest: ok"), steps.toString());
    assertTrue(steps.stream().anyMatch(s -> s.startsWith("bench: skipped (time")), steps.toString());
    assertTrue(steps.stream().anyMatch(s -> s.startsWith("sweep-64: skipped (time")), steps.toString());
    assertTrue(files().contains("logs.tgz"), files().toString());
  }

  /** MOEYARD_GPU_STEPS (a name and a pattern): only those run, every other step says it was not selected. */
  @Test
  void onlyTheSelectedStepsRun() throws Exception {
    Result r = run(330, Map.of("MOEYARD_GPU_STEPS", "selftest,sweep-1*"));
    List<String> steps = steps(r.output());
    assertEquals(0, r.exit(), "output:\n" + r.output());
    for (String s : steps) {
      String name = s.substring(0, s.indexOf(':'));
      if (name.equals("selftest") || name.equals("sweep-16")) assertTrue(s.contains(": ok"), s + "\n" + r.output());
      else if (List.of("bench", "sweep-8", "sweep-64").contains(name)) assertEquals(name + ": skipped (not selected)", s);
      else assertTrue(s.contains(": skipped ("), s);
    }
    assertTrue(files().containsAll(List.of("bench-deepseek-v3-t16.json", "summary.txt", "logs.tgz")), files().toString());
    assertTrue(!files().contains("bench-deepseek-v3.json"), files().toString());
  }
}
