package io.moeyard.engine.shm;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Names of a job's shared-memory files, and their removal. Every file is
 * {@code moeyard-<pid>-<port>-...} under {@link #dir()}: {@code pid} is the process that owns the
 * job (the {@code moeyard launch} process, or rank 0 when the ranks were started otherwise; for a
 * {@link ClusterTransport} machine's block, its leader's launcher or its leader: always a process
 * of the machine that holds the file) and
 * {@code port} the store's port. Files are unlinked as soon as every rank has mapped them, so a
 * file only outlives its job when a process died between creating and unlinking it; the job's
 * owner sweeps its prefix on exit, and any join sweeps files whose owner is no longer alive.
 */
public final class ShmFiles {
  private ShmFiles() {}

  /** Files start with this. */
  public static final String PREFIX = "moeyard-";

  /** Where the files live: {@code /dev/shm} (a tmpfs), or {@code -Dmoeyard.shm.dir}. */
  public static Path dir() {
    return Path.of(System.getProperty("moeyard.shm.dir", "/dev/shm"));
  }

  /** The prefix of every file of the job owned by {@code ownerPid}. */
  public static String ownerPrefix(long ownerPid) {
    return PREFIX + ownerPid + "-";
  }

  static String job(long ownerPid, int port) {
    return ownerPid + "-" + port;
  }

  static Path control(String job) {
    return dir().resolve(PREFIX + job + "-ctl");
  }

  /** The control block of machine {@code machine} of a job whose ranks span machines ({@link ClusterTransport}), under {@code dir}. */
  static Path machineControl(Path dir, String job, int machine) {
    return dir.resolve(PREFIX + job + "-m" + machine + "-ctl");
  }

  /** Rank {@code rank}'s file of its {@code region}th peer memory, under {@code dir}. */
  static Path region(Path dir, String job, int rank, int region) {
    return dir.resolve(PREFIX + job + "-rank" + rank + "-" + region);
  }

  /** The files of {@code ownerPid}'s jobs that still exist. */
  public static List<Path> list(long ownerPid) {
    List<Path> found = new ArrayList<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir(), ownerPrefix(ownerPid) + "*")) {
      for (Path p : ds) found.add(p);
    } catch (IOException e) {
      // No directory, nothing of ours in it.
    }
    return found;
  }

  /** Removes what is left of {@code ownerPid}'s jobs; returns how many files it removed. */
  public static int sweep(long ownerPid) {
    int n = 0;
    for (Path p : list(ownerPid)) if (deleteQuietly(p)) n++;
    return n;
  }

  /** Removes the files of jobs whose owner process is gone (left by a crash between create and unlink). */
  static void sweepOrphans() {
    sweepOrphans(dir());
  }

  /** {@link #sweepOrphans()} under {@code dir}. */
  static void sweepOrphans(Path dir) {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, PREFIX + "*")) {
      for (Path p : ds) {
        String rest = p.getFileName().toString().substring(PREFIX.length());
        int dash = rest.indexOf('-');
        if (dash <= 0) continue;
        long pid;
        try {
          pid = Long.parseLong(rest.substring(0, dash));
        } catch (NumberFormatException e) {
          continue;
        }
        if (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) continue;
        deleteQuietly(p);
      }
    } catch (IOException e) {
      // Best effort: nothing to sweep, or not ours to read.
    }
  }

  static boolean deleteQuietly(Path p) {
    try {
      return Files.deleteIfExists(p);
    } catch (IOException e) {
      return false;
    }
  }
}
