package io.moeyard.bench.cli;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.RendezvousException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moeyard rendezvous-check} (hidden): one rank of a process world joins from its
 * environment, exchanges a configuration and a blob, and prints one line: the end-to-end test of
 * the launcher and the store.
 */
@Command(
    name = "rendezvous-check",
    hidden = true,
    mixinStandardHelpOptions = true,
    description = "Joins the process world from the torchrun variables, all-gathers a blob, prints one line. Exit 2: the world did not form.")
public final class RendezvousCheckCommand implements Callable<Integer> {
  @Option(names = "--config", paramLabel = "KEY=VALUE", description = "configuration entries every rank must agree on")
  Map<String, String> config = new LinkedHashMap<>();

  @Option(names = "--timeout-ms", defaultValue = "10000", description = "wait for the slowest rank; default ${DEFAULT-VALUE}")
  long timeoutMs;

  @Option(names = "--fail-rank", defaultValue = "-1", description = "this rank dies (exit code 3, no goodbye) after joining (fault tests)")
  int failRank;

  @Option(names = "--hold-ms", defaultValue = "0", description = "stay alive this long after the exchange (launcher fault tests)")
  long holdMs;

  @Override
  public Integer call() throws InterruptedException {
    System.out.println("pid " + ProcessHandle.current().pid());
    System.out.flush();
    try {
      RankEnv env = RankEnv.fromEnv();
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
        Thread.sleep(holdMs);
        return 0;
      }
    } catch (RendezvousException e) {
      System.err.println("moeyard rendezvous-check: " + e.getMessage());
      return 2;
    }
  }
}
