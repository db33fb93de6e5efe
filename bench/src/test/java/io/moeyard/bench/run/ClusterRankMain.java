package io.moeyard.bench.run;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.transport.PeerMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;

/**
 * One rank process of {@link ClusterTransportProcessTest}: joins a {@link ClusterTransport} from
 * the torchrun variables as a rank of pretend machine {@code args[0]}, then meets its peers in a
 * loop (an all-gather checked against every rank's value, a machine barrier), printing "looping"
 * once it is under way; with {@code args[1]} "sendrecv", the loop is of {@link ClusterTransport#sendRecv}
 * instead (every rank sends every rank 256 KiB a round, from its peer memory, which its
 * machine's ranks copy, and over the links to the other machine's), each message checked.
 * Exit 3 when a collective failed (printed), 1 on a wrong value.
 */
public final class ClusterRankMain {
  private ClusterRankMain() {}

  public static void main(String[] args) {
    int code;
    try (ClusterTransport t = ClusterTransport.join(RankEnv.fromEnv(), Map.of("test", "cluster-loop"),
        ProcessWorld.DEFAULT_TIMEOUT, "pretend-machine-" + args[0])) {
      code = args.length > 1 && args[1].equals("sendrecv") ? sendRecvLoop(t) : loop(t);
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

  private static final int MESSAGE = 256 << 10;

  private static int sendRecvLoop(ClusterTransport t) {
    int me = t.rank();
    int n = t.size();
    try (PeerMemory peer = t.peerMemory((long) n * MESSAGE); Arena arena = Arena.ofConfined()) {
      MemorySegment[] send = new MemorySegment[n];
      MemorySegment[] recv = new MemorySegment[n];
      MemorySegment out = peer.allocate((long) n * MESSAGE, 64);
      for (int q = 0; q < n; q++) {
        send[q] = out.asSlice((long) q * MESSAGE, MESSAGE);
        recv[q] = arena.allocate(MESSAGE);
      }
      for (long round = 0; ; round++) {
        // the previous round's sendRecv returned, and the barrier after it: the send buffers are free again
        for (int q = 0; q < n; q++) send[q].fill((byte) (round * 31 + me * 7 + q));
        t.sendRecv(send, recv);
        for (int p = 0; p < n; p++) {
          byte want = (byte) (round * 31 + p * 7 + me);
          if (recv[p].get(ValueLayout.JAVA_BYTE, 0) != want || recv[p].get(ValueLayout.JAVA_BYTE, MESSAGE - 1) != want) {
            System.out.println("round " + round + ": rank " + p + "'s message is wrong");
            return 1;
          }
        }
        t.barrier();
        if (round == 10) System.out.println("looping pid " + ProcessHandle.current().pid());
      }
    }
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
