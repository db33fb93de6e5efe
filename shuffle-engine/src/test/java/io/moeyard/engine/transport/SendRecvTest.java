package io.moeyard.engine.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** {@link Transport#sendRecv} on the in-JVM world: every message arrives whole, sizes are checked on every rank. */
class SendRecvTest {
  /** Message bytes from p to q in round i: random, some empty, the same on both ends. */
  private static int size(long seed, int i, int p, int q) {
    int n = new SplittableRandom(seed * 1_000_003L + i * 4099L + p * 64L + q).nextInt(-20, 300);
    return Math.max(0, n);
  }

  private static byte payload(int i, int p, int q, int b) {
    return (byte) (31 * i + 17 * p + 7 * q + b);
  }

  @Test
  void everyMessageArrivesWholeAndSendBuffersAreFreeAfterTheNextCall() {
    TestSeed seed = TestSeed.fresh();
    int ranks = 5;
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(ranks))) {
      seed.check(() -> world.run(t -> {
        int me = t.rank();
        try (PeerMemory mem = t.peerMemory(0)) {
          MemorySegment[] areas = {mem.allocate(ranks * 512L, 64), mem.allocate(ranks * 512L, 64)};
          MemorySegment in = mem.allocate(ranks * 512L, 64);
          for (int i = 0; i < 6; i++) {
            // two send areas by turns: round i refills the area of round i - 2, free since round
            // i - 1's call returned
            MemorySegment area = areas[i % 2];
            MemorySegment[] send = new MemorySegment[ranks];
            MemorySegment[] recv = new MemorySegment[ranks];
            for (int q = 0; q < ranks; q++) {
              int n = size(seed.value(), i, me, q);
              send[q] = area.asSlice(q * 512L, n);
              for (int b = 0; b < n; b++) send[q].set(ValueLayout.JAVA_BYTE, b, payload(i, me, q, b));
              int m = size(seed.value(), i, q, me);
              recv[q] = m == 0 && q % 2 == 0 ? null : in.asSlice(q * 512L, m); // nothing: null or empty
            }
            t.sendRecv(send, recv);
            for (int p = 0; p < ranks; p++) {
              for (int b = 0; b < size(seed.value(), i, p, me); b++) {
                assertEquals(payload(i, p, me, b), recv[p].get(ValueLayout.JAVA_BYTE, b), "round " + i + " from " + p + " byte " + b);
              }
            }
          }
          t.barrier(); // peers may read this rank's last messages until then
        }
        return null;
      }));
    }
  }

  @Test
  void aSizeMismatchFailsEveryRankNamingBoth() {
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(3))) {
      List<String> msgs = world.run(t -> {
        MemorySegment buf = MemorySegment.ofArray(new byte[64]);
        MemorySegment[] send = new MemorySegment[3];
        MemorySegment[] recv = new MemorySegment[3];
        send[(t.rank() + 1) % 3] = buf.asSlice(0, 8);
        // rank 2 expects 4 bytes from rank 1, which sends 8
        recv[(t.rank() + 2) % 3] = buf.asSlice(8, t.rank() == 2 ? 4 : 8);
        try {
          t.sendRecv(send, recv);
          return null;
        } catch (CollectiveException e) {
          return e.getMessage();
        }
      });
      for (String m : msgs) {
        assertTrue(m != null && m.contains("rank 1 sends rank 2 8 bytes, rank 2 expects 4"), String.valueOf(m));
      }
    }
  }

  /**
   * The alternating posts under stress: after each all-gather one rank or another dawdles before
   * it copies out, while the others go on to fill their next post and, every few rounds, a round
   * is refused on every rank (the refusal skips the copies); a post reused too early would hand a
   * slow rank the next round's sizes or segments.
   */
  @Test
  void aSlowPeerReadsTheRoundItIsInWhileFastRanksPostTheNext() {
    TestSeed seed = TestSeed.fresh();
    int ranks = 4;
    int rounds = 300;
    try (CpuWorld world = CpuWorld.create(Topology.singleNode(ranks), java.time.Duration.ofSeconds(10))) {
      seed.check(() -> world.run(t0 -> {
        int me = t0.rank();
        SplittableRandom rnd = new SplittableRandom(seed.value() + me);
        Transport slow = new Transport() {
          @Override
          public int rank() {
            return t0.rank();
          }

          @Override
          public int size() {
            return t0.size();
          }

          @Override
          public Topology topology() {
            return t0.topology();
          }

          @Override
          public Object[] allGather(Object mine) {
            Object[] got = t0.allGather(mine);
            int d = rnd.nextInt(8);
            if (d == 0) java.util.concurrent.locks.LockSupport.parkNanos(200_000);
            else if (d == 1) Thread.yield();
            return got;
          }

          @Override
          public void abort(Throwable cause) {
            t0.abort(cause);
          }

          @Override
          public boolean peerStores() {
            return t0.peerStores();
          }
        };
        PointToPoint p2p = new PointToPoint(slow);
        try (PeerMemory mem = t0.peerMemory(0)) {
          MemorySegment[] areas = {mem.allocate(ranks * 512L, 64), mem.allocate(ranks * 512L, 64)};
          MemorySegment in = mem.allocate(ranks * 512L, 64);
          for (int i = 0; i < rounds; i++) {
            MemorySegment area = areas[i % 2];
            MemorySegment[] send = new MemorySegment[ranks];
            MemorySegment[] recv = new MemorySegment[ranks];
            boolean refused = i % 7 == 3;
            for (int q = 0; q < ranks; q++) {
              int n = size(seed.value(), i, me, q);
              send[q] = area.asSlice(q * 512L, n);
              for (int b = 0; b < n; b++) send[q].set(ValueLayout.JAVA_BYTE, b, payload(i, me, q, b));
              int m = size(seed.value(), i, q, me) + (refused && me == 1 && q == 2 ? 1 : 0);
              recv[q] = in.asSlice(q * 512L, m);
              recv[q].fill((byte) 0x5a);
            }
            try {
              p2p.run(send, recv);
              if (refused) throw new AssertionError("round " + i + " should have been refused");
            } catch (CollectiveException e) {
              if (!refused) throw e;
              continue;
            }
            for (int p = 0; p < ranks; p++) {
              for (int b = 0; b < size(seed.value(), i, p, me); b++) {
                assertEquals(payload(i, p, me, b), recv[p].get(ValueLayout.JAVA_BYTE, b), "round " + i + " from " + p + " byte " + b);
              }
            }
          }
          t0.barrier();
        }
        return null;
      }));
    }
  }
}
