package io.moeyard.bench.cli;

import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmFiles;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The rank processes of one {@code moeyard launch}: starts them, prefixes their output with the
 * rank, and watches them. The first rank to fail decides the exit code and gets the others
 * stopped; a shutdown hook stops them too when the launcher itself is told to go. Owns the child
 * processes and the threads that copy their output.
 */
final class RankProcesses {
  /** The JVM options the ./moeyard launcher passes: the children run the same code the same way. */
  static final List<String> JVM_OPTIONS = List.of(
      "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow", "--add-modules", "jdk.incubator.vector");

  /** Children watch this pid and leave when it is gone, so that a launcher killed with -9 leaves no rank behind. */
  static final String LAUNCHER_PID_ENV = "MOEYARD_LAUNCHER_PID";

  /** How long a rank may take to leave after SIGTERM before it is killed. */
  private static final long STOP_GRACE_MILLIS = 3_000;

  private final List<Process> children = new ArrayList<>();
  private final List<Thread> pumps = new ArrayList<>();
  private final PrintWriter out;
  private final PrintWriter err;
  /** Rank 0's standard output unprefixed: it reports for all ranks (the multi-process bench). */
  private final boolean rank0Reports;
  /** The machine name the ranks give ({@link ClusterTransport#MACHINE_ENV}), or null: their host's. */
  private final String machineName;

  RankProcesses(PrintWriter out, PrintWriter err) {
    this(out, err, false, null);
  }

  RankProcesses(PrintWriter out, PrintWriter err, boolean rank0Reports, String machineName) {
    this.out = out;
    this.err = err;
    this.rank0Reports = rank0Reports;
    this.machineName = machineName;
  }

  /** The command that starts this JVM's main class again on the same class path with {@code args}. */
  static List<String> sameJvm(List<String> args) {
    String java = ProcessHandle.current().info().command()
        .orElse(System.getProperty("java.home") + "/bin/java");
    List<String> cmd = new ArrayList<>();
    cmd.add(java);
    String extra = System.getenv("MOEYARD_JVM_OPTS");
    if (extra != null && !extra.isBlank()) cmd.addAll(List.of(extra.strip().split("\\s+")));
    cmd.addAll(JVM_OPTIONS);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(Moeyard.class.getName());
    cmd.addAll(args);
    return cmd;
  }

  /**
   * Runs {@code command} as ranks 0..nprocs-1 of a world of nodes of {@code localWorldSize} ranks;
   * returns 0 when all exit 0, else the first failing rank's exit code.
   */
  int run(List<String> command, int nprocs, int localWorldSize, String masterAddr, int masterPort) {
    return run(command, nprocs, 0, nprocs, localWorldSize, masterAddr, masterPort);
  }

  /**
   * Runs {@code command} as ranks {@code firstRank}..{@code firstRank + nprocs - 1} of a world of
   * {@code worldSize} ranks (this machine's share of a world that other launchers complete on other
   * machines), in nodes of {@code localWorldSize} ranks.
   */
  int run(List<String> command, int nprocs, int firstRank, int worldSize, int localWorldSize, String masterAddr,
      int masterPort) {
    Thread hook = Thread.ofPlatform().unstarted(this::kill);
    Runtime.getRuntime().addShutdownHook(hook);
    try {
      return supervise(command, nprocs, firstRank, worldSize, localWorldSize, masterAddr, masterPort);
    } finally {
      kill();
      // the ranks unlink their shared-memory files once all mapped them; a rank killed between
      // creating and unlinking leaves its file behind, named with this launcher's pid
      ShmFiles.sweep(ProcessHandle.current().pid());
      for (Thread t : pumps) {
        try {
          t.join(2_000);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      out.flush();
      err.flush();
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException ignored) {
        // Already shutting down: the hook is running or ran.
      }
    }
  }

  private int supervise(List<String> command, int nprocs, int firstRank, int worldSize, int localWorldSize,
      String masterAddr, int masterPort) {
    BlockingQueue<Integer> exited = new LinkedBlockingQueue<>();
    for (int i = 0; i < nprocs; i++) {
      int r = firstRank + i;
      ProcessBuilder pb = new ProcessBuilder(command);
      pb.environment().putAll(RankEnv.variables(r, worldSize, localWorldSize, masterAddr, masterPort));
      pb.environment().put(LAUNCHER_PID_ENV, Long.toString(ProcessHandle.current().pid()));
      if (machineName != null) pb.environment().put(ClusterTransport.MACHINE_ENV, machineName);
      Process p;
      try {
        p = pb.start();
      } catch (IOException e) {
        err.println("moeyard launch: cannot start rank " + r + " (" + command.getFirst() + "): " + e.getMessage());
        return 1;
      }
      synchronized (children) {
        children.add(p);
      }
      pump(rank0Reports && r == 0 ? "" : "[rank " + r + "] ", p.getInputStream(), out);
      pump("[rank " + r + "] ", p.getErrorStream(), err);
      int child = i;
      p.onExit().thenRun(() -> exited.add(child));
    }
    int code = 0;
    long stopDeadline = Long.MAX_VALUE;
    for (int left = nprocs; left > 0; ) {
      Integer i;
      try {
        i = stopDeadline == Long.MAX_VALUE ? exited.take()
            : exited.poll(Math.max(1, stopDeadline - System.nanoTime()), TimeUnit.NANOSECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        err.println("moeyard launch: interrupted; stopping the ranks");
        return 130;
      }
      if (i == null) {
        err.println("moeyard launch: ranks still running " + STOP_GRACE_MILLIS + " ms after SIGTERM; killing them");
        kill();
        stopDeadline = Long.MAX_VALUE;
        continue;
      }
      left--;
      int c = children.get(i).exitValue();
      int r = firstRank + i;
      if (c != 0 && code == 0) {
        code = c;
        if (left > 0) {
          err.println("moeyard launch: rank " + r + " exited with code " + c + "; stopping the other ranks");
          terminate();
          stopDeadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STOP_GRACE_MILLIS);
        } else {
          err.println("moeyard launch: rank " + r + " exited with code " + c);
        }
      }
    }
    return code;
  }

  private void pump(String prefix, InputStream in, PrintWriter to) {
    Thread t = Thread.ofPlatform().daemon().name("moeyard-launch-" + prefix.strip()).start(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
        for (String line; (line = r.readLine()) != null; ) {
          synchronized (to) {
            to.println(prefix + line);
            to.flush();
          }
        }
      } catch (IOException | UncheckedIOException ignored) {
        // The rank is gone; what it printed so far was copied.
      }
    });
    pumps.add(t);
  }

  /** Asks every live rank (and whatever it started) to leave: they may still clean up. */
  private void terminate() {
    for (Process p : snapshot()) {
      p.descendants().forEach(ProcessHandle::destroy);
      p.destroy();
    }
  }

  /** Kills every live rank and its descendants and waits for them to be gone. */
  private void kill() {
    for (Process p : snapshot()) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
    for (Process p : snapshot()) {
      try {
        p.waitFor(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  private List<Process> snapshot() {
    synchronized (children) {
      return List.copyOf(children);
    }
  }
}
