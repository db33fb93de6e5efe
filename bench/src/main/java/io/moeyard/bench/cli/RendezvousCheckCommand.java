package io.moeyard.bench.cli;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.shm.ClusterTransport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moeyard rendezvous-check}: one rank of a process world joins from its environment,
 * exchanges a configuration and a blob, and prints one line: the end-to-end test of the launcher
 * and the store. With {@code --cluster} it then meets through a {@link ClusterTransport} and says
 * how the world splits into machines and what a meeting costs there: the check to run on a new
 * set of machines before an engine joins them.
 */
@Command(
    name = "rendezvous-check",
    mixinStandardHelpOptions = true,
    description = {
      "Joins the process world from the torchrun variables, all-gathers a blob, prints one line. Exit 2: the world did not form.",
      "With --cluster, also the host meetings between machines (ClusterTransport): each rank's machine, its leader, and the",
      "median time of an all-gather and of a machine barrier; then a sendRecv of --link-bytes to every peer (the data path's",
      "messages between machines: direct TCP links, which a firewall between the machines would stop), checked byte for byte",
      "and timed. Example: moeyard launch --nprocs 8 --machines 2 --machine-rank I --master-addr HOST0 --master-port 29500",
      "-- rendezvous-check --cluster"
    })
public final class RendezvousCheckCommand implements Callable<Integer> {
  @Option(names = "--config", paramLabel = "KEY=VALUE", description = "configuration entries every rank must agree on")
  Map<String, String> config = new LinkedHashMap<>();

  @Option(names = "--timeout-ms", defaultValue = "10000", description = "wait for the slowest rank; default ${DEFAULT-VALUE}")
  long timeoutMs;

  @Option(names = "--fail-rank", defaultValue = "-1", description = "this rank dies (exit code 3, no goodbye) after joining (fault tests)")
  int failRank;

  @Option(names = "--hold-ms", defaultValue = "0", description = "stay alive this long after the exchange (launcher fault tests)")
  long holdMs;

  @Option(names = "--cluster", description = "also meet through ClusterTransport and time its meetings")
  boolean cluster;

  @Option(names = "--machine-name", paramLabel = "NAME",
      description = "with --cluster: this rank's machine (default: host name and boot id; a pretend name tests machines on one host)")
  String machineName;

  @Option(names = "--meetings", defaultValue = "200", description = "with --cluster: meetings timed; default ${DEFAULT-VALUE}")
  int meetings;

  @Option(names = "--link-bytes", defaultValue = "1048576",
      description = "with --cluster: bytes each rank sends every peer in the timed sendRecv rounds (at most 20); default ${DEFAULT-VALUE}")
  int linkBytes;

  @Override
  public Integer call() throws InterruptedException {
    System.out.println("pid " + ProcessHandle.current().pid());
    System.out.flush();
    try {
      RankEnv env = RankEnv.fromEnv();
      if (meetings < 1) {
        System.err.println("moeyard rendezvous-check: --meetings must be at least 1, got " + meetings);
        return 2;
      }
      if (linkBytes < 1) {
        System.err.println("moeyard rendezvous-check: --link-bytes must be at least 1, got " + linkBytes);
        return 2;
      }
      // closing is idempotent: a cluster transport closes the world too
      try (ProcessWorld world = ProcessWorld.join(env, config, Duration.ofMillis(timeoutMs))) {
        if (env.rank() == failRank) {
          // A crash, not an orderly exit: no goodbye to the store, no shutdown hooks.
          System.err.println("dying on purpose (--fail-rank " + failRank + ")");
          System.err.flush();
          Runtime.getRuntime().halt(3);
        }
        List<byte[]> all = world.allGather(("hello from " + env.rank()).getBytes(StandardCharsets.UTF_8));
        for (int r = 0; r < all.size(); r++) {
          String got = new String(all.get(r), StandardCharsets.UTF_8);
          if (!got.equals("hello from " + r)) {
            System.err.println("rank " + r + "'s blob arrived as '" + got + "'");
            return 1;
          }
        }
        world.barrier();
        System.out.println("rendezvous ok: rank " + env.rank() + " of " + env.worldSize() + ", node " + env.node() + " of "
            + env.nodes() + ", local rank " + env.localRank() + ", " + all.size() + " blobs");
        System.out.flush();
        if (cluster) clusterCheck(world, env);
        Thread.sleep(holdMs);
        return 0;
      }
    } catch (CollectiveException e) {
      System.err.println("moeyard rendezvous-check: " + e.getMessage());
      return 2;
    }
  }

  /** Meets through a ClusterTransport of {@code world} (which it then owns and closes) and prints what it found. */
  private void clusterCheck(ProcessWorld world, RankEnv env) {
    String name = machineName != null ? machineName : ClusterTransport.thisMachine();
    try (ClusterTransport t = ClusterTransport.open(world, Duration.ofMillis(timeoutMs), name)) {
      int me = env.rank();
      int m = t.machineOf(me);
      int leader = first(t, m);
      Object[] names = t.allGather(name);
      for (int r = 0; r < names.length; r++) {
        if (!names[r].equals(names[first(t, t.machineOf(r))])) {
          throw new IllegalStateException("rank " + r + " is on machine " + t.machineOf(r) + " but named '" + names[r] + "'");
        }
      }
      long[] gather = new long[meetings];
      long[] barrier = new long[meetings];
      for (int i = 0; i < meetings; i++) {
        long t0 = System.nanoTime();
        t.allGather(i);
        long t1 = System.nanoTime();
        t.machineBarrier();
        gather[i] = t1 - t0;
        barrier[i] = System.nanoTime() - t1;
      }
      t.barrier();
      System.out.printf("cluster ok: rank %d on machine %d of %d ('%s', leader rank %d); median of %d: allGather %.1f us, machineBarrier %.1f us%n",
          me, m, t.machines(), name, leader, meetings, median(gather) / 1e3, median(barrier) / 1e3);
      System.out.flush();
      linkCheck(t);
    }
  }

  /**
   * Rounds of {@link ClusterTransport#sendRecv} in which every rank sends every peer
   * {@code --link-bytes} of a pattern naming both: every byte checked, the median round timed.
   */
  private void linkCheck(ClusterTransport t) {
    int n = t.size();
    int me = t.rank();
    int rounds = Math.min(meetings, 20);
    long[] ns = new long[rounds];
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment[] send = new MemorySegment[n];
      MemorySegment[] recv = new MemorySegment[n];
      MemorySegment[] expected = new MemorySegment[n];
      for (int q = 0; q < n; q++) {
        if (q == me) continue;
        send[q] = arena.allocate(linkBytes);
        send[q].fill(pattern(me, q));
        recv[q] = arena.allocate(linkBytes);
        expected[q] = arena.allocate(linkBytes);
        expected[q].fill(pattern(q, me));
      }
      for (int i = 0; i < rounds; i++) {
        t.barrier(); // also frees the send buffers of the round before
        long t0 = System.nanoTime();
        t.sendRecv(send, recv);
        ns[i] = System.nanoTime() - t0;
        for (int p = 0; p < n; p++) {
          if (p == me) continue;
          long b = recv[p].mismatch(expected[p]);
          if (b >= 0) throw new IllegalStateException("rank " + me + ": byte " + b + " of rank " + p + "'s message in round " + i + " is wrong");
          recv[p].fill((byte) 0);
        }
      }
      t.barrier();
    }
    double ms = median(ns) / 1e6;
    System.out.printf("links ok: rank %d sent %d peer(s) %d bytes each, received as much; median of %d rounds %.2f ms"
        + " (%.2f GB/s out of this rank)%n", me, n - 1, linkBytes, rounds, ms, (double) (n - 1) * linkBytes / (ms * 1e6));
    System.out.flush();
  }

  private static byte pattern(int from, int to) {
    return (byte) (from * 31 + to * 7 + 1);
  }

  private static int first(ClusterTransport t, int machine) {
    for (int r = 0; r < t.size(); r++) if (t.machineOf(r) == machine) return r;
    throw new IllegalStateException("machine " + machine + " has no rank");
  }

  private static double median(long[] nanos) {
    long[] s = nanos.clone();
    java.util.Arrays.sort(s);
    return s[s.length / 2];
  }
}
