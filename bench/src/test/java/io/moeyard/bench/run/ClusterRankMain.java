package io.moeyard.bench.run;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import java.util.Map;

/**
 * One rank process of {@link ClusterTransportProcessTest}: joins a {@link ClusterTransport} from
 * the torchrun variables as a rank of pretend machine {@code args[0]}, then meets its peers in a
 * loop (an all-gather checked against every rank's value, a machine barrier), printing "looping"
 * once it is under way. Exit 3 when a collective failed (printed), 1 on a wrong value.
 */
public final class ClusterRankMain {
  private ClusterRankMain() {}

  public static void main(String[] args) {
    int code;
    try (ClusterTransport t = ClusterTransport.join(RankEnv.fromEnv(), Map.of("test", "cluster-loop"),
        ProcessWorld.DEFAULT_TIMEOUT, "pretend-machine-" + args[0])) {
      code = loop(t);
    } catch (CollectiveException e) {
      System.out.println("collective failed: " + e.getClass().getSimpleName() + ": " + e.getMessage());
      code = 3;
    } catch (Throwable e) {
      e.printStackTrace(System.out);
      code = 4;
    }
    System.out.flush();
    System.exit(code);
  }

  private static int loop(ClusterTransport t) {
    int me = t.rank();
    for (long round = 0; ; round++) {
      Object[] all = t.allGather(round * 1000 + me);
      for (int p = 0; p < all.length; p++) {
        if (!Long.valueOf(round * 1000 + p).equals(all[p])) {
          System.out.println("round " + round + ": rank " + p + " said " + all[p]);
          return 1;
        }
      }
      t.machineBarrier();
      if (round == 10) System.out.println("looping pid " + ProcessHandle.current().pid());
    }
  }
}
