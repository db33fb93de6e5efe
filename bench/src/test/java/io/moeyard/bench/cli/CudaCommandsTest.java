package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.cuda.CudaBackend;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The command-line side of the cuda backend and of {@code moeyard selftest}. */
class CudaCommandsTest {

  /** Runs the command line with stdout and stderr captured: {exit code, stdout, stderr}. */
  static Object[] run(String... args) {
    PrintStream out = System.out;
    PrintStream err = System.err;
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    try {
      System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
      System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
      int rc = Moeyard.commandLine().execute(args);
      return new Object[] {rc, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8)};
    } finally {
      System.setOut(out);
      System.setErr(err);
    }
  }

  @Test
  void selftestOnTheCpuBackendPasses() {
    Object[] r = run("selftest", "--backend", "cpu", "--cases", "25", "--seed", "3", "--max-tokens", "40");
    assertEquals(0, r[0], r[1] + "\n" + r[2]);
    assertTrue(((String) r[1]).contains("25 cases, 25 passed, 0 failed"), (String) r[1]);
  }

  @Test
  void selftestReplaysOneCase() {
    Object[] r = run("selftest", "--case-seed", "12345");
    assertEquals(0, r[0], r[1] + "\n" + r[2]);
    assertTrue(((String) r[1]).contains("1 cases, 1 passed"), (String) r[1]);
  }

  @Test
  void selftestRejectsBadOptions() {
    assertEquals(2, run("selftest", "--backend", "tpu")[0]);
    assertEquals(2, run("selftest", "--cases", "0")[0]);
  }

  @Test
  void benchOnCudaWithoutAGpuExits3WithTheReason() {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "a GPU is present");
    Object[] r = run("bench", "--backend", "cuda", "--ranks", "2", "--tokens", "8", "--hidden", "64", "--experts", "4",
        "--topk", "2");
    assertEquals(3, r[0]);
    assertTrue(((String) r[2]).startsWith("moeyard bench: CUDA backend unavailable: "), (String) r[2]);
  }

  /** Said once by the launcher, before any rank process starts. */
  @Test
  void benchWithRankProcessesOnCudaWithoutAGpuExits3WithTheReason() {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "a GPU is present");
    Object[] r = run("bench", "--backend", "cuda", "--procs", "2", "--tokens", "8", "--hidden", "64", "--experts", "4",
        "--topk", "2");
    assertEquals(3, r[0], r[1] + "\n" + r[2]);
    assertTrue(((String) r[2]).startsWith("moeyard bench: CUDA backend unavailable: "), (String) r[2]);
    assertEquals(2, run("bench", "--backend", "tpu", "--procs", "2")[0]);
  }

  @Test
  void selftestOnCudaWithoutAGpuExits3WithTheReason() {
    Assumptions.assumeFalse(CudaBackend.availability().available(), "a GPU is present");
    Object[] r = run("selftest", "--backend", "cuda", "--cases", "2");
    assertEquals(3, r[0]);
    assertTrue(((String) r[2]).startsWith("moeyard selftest: CUDA backend unavailable: "), (String) r[2]);
  }

  @Test
  void benchOnCudaRejectsShapesTheKernelsCannotRun() {
    Assumptions.assumeTrue(CudaBackend.availability().available(), "no GPU: the availability check comes first");
    assertEquals(2, run("bench", "--backend", "cuda", "--experts", "64", "--topk", "17")[0]);
  }
}
