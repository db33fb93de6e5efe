package io.moeyard.bench.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench/machines/rehearse.sh}: two machines with a network, a {@code /dev/shm} and a host
 * name each (Linux namespaces), the README's checklist between them, and a machine that dies or
 * goes silent mid-run. Unlike the pretend machines of the other tests, nothing tells the ranks which
 * machine they are on, and the store's address is not loopback. Skipped where the host does not
 * allow namespaces (the script exits 3: no root, no {@code ip}).
 */
class MachinesRehearsalTest {
  @Test
  void theChecklistPassesBetweenTwoMachines(@TempDir Path dir) throws IOException, InterruptedException {
    Path root = Path.of(System.getProperty("user.dir")).getParent();
    Path script = root.resolve("bench/machines/rehearse.sh");
    assertTrue(Files.isRegularFile(script), script.toString());
    // this build's classes, not the launcher (which would build the project again)
    Path moeyard = dir.resolve("moeyard");
    List<String> cmd = new ArrayList<>(RankProcesses.sameJvm(List.of()));
    cmd.set(cmd.indexOf("-cp") + 1, System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")));
    StringBuilder line = new StringBuilder("#!/bin/sh\nexec");
    for (String a : cmd) line.append(" '").append(a.replace("'", "'\\''")).append('\'');
    Files.writeString(moeyard, line.append(" \"$@\"\n").toString());
    Files.setPosixFilePermissions(moeyard, PosixFilePermissions.fromString("rwx------"));

    Path log = dir.resolve("rehearse.log");
    ProcessBuilder pb = new ProcessBuilder("bash", script.toString()).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("MOEYARD", moeyard.toString());
    pb.environment().remove("MOEYARD_JVM_OPTS");
    Process p = pb.start();
    if (!p.waitFor(240, TimeUnit.SECONDS)) {
      // the script's children first: bash runs its trap (which removes the namespaces) only once
      // the command it waits for has ended
      p.descendants().forEach(ProcessHandle::destroy);
      p.destroy();
      if (!p.waitFor(10, TimeUnit.SECONDS)) p.destroyForcibly();
      throw new AssertionError("rehearse.sh hung:\n" + Files.readString(log));
    }
    byte[] out = Files.readAllBytes(log);
    String text = new String(out, StandardCharsets.UTF_8);
    Assumptions.assumeFalse(p.exitValue() == 3, () -> "cannot rehearse machines here: " + text);
    assertEquals(0, p.exitValue(), text);
    for (String step : List.of("rendezvous", "bench", "layer-example", "machine-killed", "machine-stopped")) {
      assertTrue(text.contains("rehearse: " + step + " ok"), step + ":\n" + text);
    }
  }

  /**
   * The failure steps pass only when machine 0 was still running when machine 1 was stopped:
   * here a stand-in for moeyard passes every step but ends machine 0's long bench at once, with an
   * error naming rank 2, before anything happens to machine 1 (a failure of its own, which the
   * steps must not count as noticing machine 1's death).
   */
  @Test
  void aMachineZeroThatFailedBeforeMachineOneWasStoppedFailsTheStep(@TempDir Path dir) throws IOException, InterruptedException {
    Path root = Path.of(System.getProperty("user.dir")).getParent();
    Path script = root.resolve("bench/machines/rehearse.sh");
    Path moeyard = dir.resolve("moeyard");
    Files.writeString(moeyard, """
        #!/bin/bash
        case " $* " in
          *" --help "*) exit 0 ;;
          *rendezvous-check*) echo "links ok"; exit 0 ;;
          *layer-example*) echo "layer-example: rank 0 (stand-in): ok (bf16 rounding)"; exit 0 ;;
          *" --iters 1000000 "*)
            if [[ " $* " == *" --machine-rank 0 "* ]]; then
              echo "verified: yes; timing 1000000 + 0 warm-up iterations of each..."
              echo "moeyard bench: rank 2 is not there (a failure of machine 0's own)"
              exit 1
            fi
            sleep 60; exit 0 ;;
          *" bench "*) echo "verified: yes"; exit 0 ;;
        esac
        exit 1
        """);
    Files.setPosixFilePermissions(moeyard, PosixFilePermissions.fromString("rwx------"));
    Path log = dir.resolve("rehearse.log");
    ProcessBuilder pb = new ProcessBuilder("bash", script.toString()).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("MOEYARD", moeyard.toString());
    Process p = pb.start();
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.descendants().forEach(ProcessHandle::destroy);
      p.destroy();
      if (!p.waitFor(10, TimeUnit.SECONDS)) p.destroyForcibly();
      throw new AssertionError("rehearse.sh hung:\n" + Files.readString(log));
    }
    String text = Files.readString(log);
    Assumptions.assumeFalse(p.exitValue() == 3, () -> "cannot rehearse machines here: " + text);
    assertTrue(text.contains("rehearse: layer-example ok"), text);
    assertTrue(text.contains("rehearse: machine-killed FAILED"), text);
    assertTrue(text.contains("rehearse: machine-stopped FAILED"), text);
    assertEquals(1, p.exitValue(), text);
  }

  /**
   * A host that allows network namespaces but not a machine's own mounts in them (here an
   * {@code unshare} that is refused, as in a container without the right to mount) cannot
   * rehearse: exit 3 (the test above is skipped), not every step failed.
   */
  @Test
  void aHostThatAllowsNamespacesButNotTheirMountsCannotRehearse(@TempDir Path dir) throws IOException, InterruptedException {
    Path root = Path.of(System.getProperty("user.dir")).getParent();
    Path script = root.resolve("bench/machines/rehearse.sh");
    Path bin = Files.createDirectory(dir.resolve("bin"));
    Path unshare = bin.resolve("unshare");
    Files.writeString(unshare, "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n");
    Files.setPosixFilePermissions(unshare, PosixFilePermissions.fromString("rwx------"));
    ProcessBuilder pb = new ProcessBuilder("bash", script.toString(), "--quick").redirectErrorStream(true);
    pb.environment().put("PATH", bin + ":" + System.getenv("PATH"));
    pb.environment().put("MOEYARD", "true");
    Process p = pb.start();
    String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), text);
    Assumptions.assumeFalse(text.contains("needs root, ip and unshare"), () -> "no namespaces to try here: " + text);
    assertEquals(3, p.exitValue(), text);
    assertTrue(text.contains("not rehearsing here"), text);
  }
}
