package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The channels of a world on more than one machine, without a GPU: {@link SplitChannel} gives
 * each message to the channel of its peer's side (this machine or another), and
 * {@link HostStagedChannel} carries messages between processes through host memory and a process
 * transport, with host memory standing in for device memory (its copies are plain copies between
 * native addresses).
 */
class CrossMachineChannelTest {

  /** Records what it was asked to exchange. */
  private static final class Recorder implements DeviceChannel {
    final List<long[][]> calls = new ArrayList<>();
    boolean closed;
    boolean abandoned;

    @Override
    public void abandon() {
      abandoned = true;
    }

    @Override
    public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
      calls.add(new long[][] {sendAddress.clone(), sendBytes.clone(), recvAddress.clone(), recvBytes.clone()});
    }

    @Override
    public void close() {
      closed = true;
    }
  }

  @Test
  void eachMessageGoesToTheChannelOfItsPeersSide() {
    SplittableRandom rnd = TestSeed.fresh().random();
    for (int iter = 0; iter < 50; iter++) {
      int n = 1 + rnd.nextInt(8);
      boolean[] reach = new boolean[n];
      for (int q = 0; q < n; q++) reach[q] = rnd.nextBoolean();
      long[][] args = new long[4][n];
      for (long[] a : args) for (int q = 0; q < n; q++) a[q] = rnd.nextInt(3) == 0 ? 0 : 1 + rnd.nextInt(1000);
      Recorder near = new Recorder();
      Recorder far = new Recorder();
      SplitChannel ch = new SplitChannel(near, far, reach, true);
      ch.exchange(args[0], args[1], args[2], args[3], 7);
      ch.exchange(args[0], args[1], args[2], args[3], 7); // the reused arrays start clean
      assertEquals(2, near.calls.size());
      assertEquals(2, far.calls.size());
      for (int k = 0; k < 4; k++) {
        for (int q = 0; q < n; q++) {
          assertEquals(reach[q] ? args[k][q] : 0, near.calls.get(1)[k][q], "near " + k + " " + q);
          assertEquals(reach[q] ? 0 : args[k][q], far.calls.get(1)[k][q], "far " + k + " " + q);
        }
      }
      ch.close();
      assertTrue(near.closed && far.closed);
    }
  }

  /**
   * Where every node is a machine of its own the near channel is never called (it would be a
   * collective for nothing); a message to a rank of this machine is then a planning error, thrown
   * before the far channel is called.
   */
  @Test
  void aSplitChannelWithoutNearMessagesNeverCallsTheNearChannel() {
    SplittableRandom rnd = TestSeed.fresh().random();
    for (int iter = 0; iter < 50; iter++) {
      int n = 2 + rnd.nextInt(7);
      boolean[] reach = new boolean[n];
      for (int q = 0; q < n; q++) reach[q] = rnd.nextBoolean();
      long[][] args = new long[4][n];
      for (int q = 0; q < n; q++) {
        for (long[] a : args) a[q] = reach[q] || rnd.nextInt(3) == 0 ? 0 : 1 + rnd.nextInt(1000);
      }
      Recorder near = new Recorder();
      Recorder far = new Recorder();
      SplitChannel ch = new SplitChannel(near, far, reach, false);
      ch.exchange(args[0], args[1], args[2], args[3], 7);
      assertEquals(0, near.calls.size());
      assertEquals(1, far.calls.size());
      for (int k = 0; k < 4; k++) assertArrayEquals(args[k], far.calls.get(0)[k], "far " + k);
      int q = rnd.nextInt(n);
      reach[q] = true;
      SplitChannel planned = new SplitChannel(near, far, reach, false);
      args[rnd.nextBoolean() ? 1 : 3][q] = 64;
      IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
          () -> planned.exchange(args[0], args[1], args[2], args[3], 7));
      assertTrue(e.getMessage().contains("rank " + q + " of its own machine"), e.getMessage());
      assertEquals(1, far.calls.size());
      ch.close();
      assertTrue(near.closed && far.closed);
    }
  }

  /** A failed world abandons both sides (the far one's NCCL communicator is aborted there), closing neither. */
  @Test
  void abandoningASplitChannelAbandonsBothSides() {
    Recorder near = new Recorder();
    Recorder far = new Recorder();
    new SplitChannel(near, far, new boolean[] {true, false}, true).abandon();
    assertTrue(near.abandoned && far.abandoned);
    assertTrue(!near.closed && !far.closed);
  }

  /** Host memory as "device" memory: copies between native addresses. */
  private static final HostStagedChannel.Device HOST = new HostStagedChannel.Device() {
    @Override
    public void synchronize(long stream) {}

    @Override
    public void copy(long dst, long src, long bytes) {
      MemorySegment.copy(MemorySegment.ofAddress(src).reinterpret(bytes), 0, MemorySegment.ofAddress(dst).reinterpret(bytes), 0,
          bytes);
    }
  };

  /**
   * Four rank processes (threads with a shared-memory transport each), machines {0, 1} and {2, 3}:
   * every rank sends random bytes to the ranks of the other machine, which find them where they
   * asked; a message larger than the channel was sized for fails every rank before anything moves.
   */
  @Test
  void hostStagedMessagesArriveBetweenProcesses() throws Exception {
    int n = 4;
    long max = 5000;
    long seed = TestSeed.fresh().value();
    List<Object> got = NativeTestSupport.ranks(n, 2, r -> (w -> {
      try (ShmTransport t = ShmTransport.open(w, Duration.ofSeconds(10)); Arena arena = Arena.ofConfined()) {
        boolean[] far = new boolean[n];
        for (int q = 0; q < n; q++) far[q] = q / 2 != r / 2;
        HostStagedChannel ch = new HostStagedChannel(t, HOST, far, max);
        try {
          long[] sendAt = new long[n];
          long[] sendBytes = new long[n];
          long[] recvAt = new long[n];
          long[] recvBytes = new long[n];
          MemorySegment[] in = new MemorySegment[n];
          for (int q = 0; q < n; q++) {
            if (!far[q]) continue;
            sendBytes[q] = size(seed, r, q, max);
            recvBytes[q] = size(seed, q, r, max);
            MemorySegment out = arena.allocate(Math.max(1, sendBytes[q]));
            out.copyFrom(MemorySegment.ofArray(bytes(seed, r, q, (int) sendBytes[q])));
            sendAt[q] = sendBytes[q] > 0 ? out.address() : 0;
            in[q] = arena.allocate(Math.max(1, recvBytes[q]));
            recvAt[q] = recvBytes[q] > 0 ? in[q].address() : 0;
          }
          ch.exchange(sendAt, sendBytes, recvAt, recvBytes, 0);
          for (int q = 0; q < n; q++) {
            if (!far[q] || recvBytes[q] == 0) continue;
            assertArrayEquals(bytes(seed, q, r, (int) recvBytes[q]), in[q].asSlice(0, recvBytes[q]).toArray(ValueLayout.JAVA_BYTE),
                "rank " + r + " from rank " + q);
          }
          t.barrier();
          long[] big = new long[n];
          long[] somewhere = new long[n];
          for (int q = 0; q < n; q++) {
            big[q] = far[q] && r == 3 ? max + 1 : 0;
            somewhere[q] = big[q] > 0 ? 64 : 0;
          }
          try {
            ch.exchange(somewhere, big, new long[n], new long[n], 0);
            return "no error";
          } catch (io.moeyard.engine.CollectiveException e) {
            return e.getMessage();
          }
        } finally {
          ch.close();
        }
      }
    }));
    for (int r = 0; r < n; r++) {
      assertEquals("device channel: rank 3: a message of 5001 bytes to or from rank 0 exceeds the 5000 the channel was sized for",
          got.get(r), "rank " + r);
    }
  }

  private static long size(long seed, int from, int to, long max) {
    return new SplittableRandom(seed * 31 + from * 7 + to).nextLong(max + 1);
  }

  private static byte[] bytes(long seed, int from, int to, int n) {
    byte[] b = new byte[n];
    new SplittableRandom(seed * 131 + from * 17 + to).nextBytes(b);
    return b;
  }
}
