package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * {@link PeerCopyChannel} on ranks that are threads of a {@link CpuWorld}, with a stand-in for the
 * CUDA calls that copies at once within one byte array ("device memory"; addresses are offsets in
 * it, plus one): every message lands where its receiver asked, each copy after the receiver's
 * stream waited for the sender's event of this exchange, each sender's stream then waits for the
 * events of the ranks it sent to; sizes that do not pair up and bad arguments on one rank fail
 * every rank with one message before anything is copied; events destroyed once. The device run
 * is {@link RelayGpuTest}.
 */
class PeerCopyChannelTest {

  /** Device memory and a log of calls per stream (a stream per rank: 0x5000 + rank). */
  private static final class Fake implements PeerCopyChannel.Device {
    final byte[] memory = new byte[1 << 20];
    final AtomicLong events = new AtomicLong(0xE000);
    final List<List<String>> log = new ArrayList<>();
    final List<String> destroyed = new ArrayList<>();

    Fake(int ranks) {
      for (int r = 0; r < ranks; r++) log.add(new ArrayList<>());
    }

    private List<String> of(long stream) {
      return log.get((int) (stream - 0x5000));
    }

    @Override
    public long eventCreate() {
      return events.incrementAndGet();
    }

    @Override
    public synchronized void eventDestroy(long event) {
      destroyed.add(Long.toHexString(event));
    }

    @Override
    public void eventRecord(long event, long stream) {
      of(stream).add("record " + Long.toHexString(event));
    }

    @Override
    public void streamWaitEvent(long stream, long event) {
      of(stream).add("wait " + Long.toHexString(event));
    }

    @Override
    public void copy(long dst, long src, long bytes, long stream) {
      of(stream).add("copy " + bytes);
      System.arraycopy(memory, (int) src - 1, memory, (int) dst - 1, (int) bytes);
    }
  }

  private static long stream(int r) {
    return 0x5000 + r;
  }

  @Test
  void messagesLandWhereTheirReceiversAskedInStreamOrder() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 30; iter++) {
        int ranks = 1 + rnd.nextInt(5);
        long[][] bytes = new long[ranks][ranks]; // a -> b
        for (int a = 0; a < ranks; a++) for (int b = 0; b < ranks; b++) bytes[a][b] = rnd.nextInt(3) == 0 ? 0 : 1 + rnd.nextInt(500);
        // a's message to b at sendAt[a][b], b's place for it at recvAt[b][a]: disjoint, random content
        long[][] sendAt = new long[ranks][ranks];
        long[][] recvAt = new long[ranks][ranks];
        Fake dev = new Fake(ranks);
        int next = 1;
        for (int a = 0; a < ranks; a++) {
          for (int b = 0; b < ranks; b++) {
            if (bytes[a][b] == 0) continue;
            sendAt[a][b] = next;
            for (int i = 0; i < bytes[a][b]; i++) dev.memory[next - 1 + i] = (byte) rnd.nextInt();
            next += (int) bytes[a][b];
            recvAt[b][a] = next;
            next += (int) bytes[a][b];
          }
        }
        byte[] before = dev.memory.clone();
        try (CpuWorld world = CpuWorld.create(new Topology(1, ranks))) {
          world.run(t -> {
            int r = t.rank();
            long[] sendBytes = bytes[r].clone();
            long[] recvBytes = new long[ranks];
            for (int q = 0; q < ranks; q++) recvBytes[q] = bytes[q][r];
            PeerCopyChannel ch = new PeerCopyChannel(t, dev);
            ch.exchange(sendAt[r], sendBytes, recvAt[r], recvBytes, stream(r));
            ch.close();
            return null;
          });
        }
        String at = seed + " iter " + iter + " sizes " + Arrays.deepToString(bytes);
        for (int a = 0; a < ranks; a++) {
          for (int b = 0; b < ranks; b++) {
            if (bytes[a][b] == 0) continue;
            assertArrayEquals(Arrays.copyOfRange(before, (int) sendAt[a][b] - 1, (int) (sendAt[a][b] - 1 + bytes[a][b])),
                Arrays.copyOfRange(dev.memory, (int) recvAt[b][a] - 1, (int) (recvAt[b][a] - 1 + bytes[a][b])),
                "message " + a + " -> " + b + " " + at);
          }
        }
        assertEquals(2 * ranks, dev.destroyed.size(), "events destroyed " + at);
        assertEquals(2 * ranks, dev.destroyed.stream().distinct().count(), "each event destroyed once " + at);
        // per stream: record filled; per sender (from the next rank on) wait filled, copy; record
        // copied; per receiver wait copied
        for (int r = 0; r < ranks; r++) {
          List<String> got = dev.log.get(r);
          assertTrue(got.get(0).startsWith("record "), got + " " + at);
          int i = 1;
          for (int k = 0; k < ranks; k++) {
            int q = (r + 1 + k) % ranks;
            if (bytes[q][r] == 0) continue;
            assertTrue(got.get(i).startsWith("wait "), "rank " + r + " waits before copying from " + q + ": " + got + " " + at);
            assertEquals("copy " + bytes[q][r], got.get(i + 1), "rank " + r + " copies from " + q + ": " + got + " " + at);
            i += 2;
          }
          assertTrue(got.get(i).startsWith("record "), got + " " + at);
          assertTrue(!got.get(i).equals(got.get(0)), "two events " + got);
          i++;
          long sends = Arrays.stream(bytes[r]).filter(b -> b > 0).count();
          assertEquals(i + sends, got.size(), "rank " + r + " waits for each receiver it sent to: " + got + " " + at);
        }
      }
    });
  }

  /**
   * Between rank processes (a process transport: the posted values cross in the channel's codec),
   * a peer's posted address and events are its own; the channel must use what {@code reach} makes
   * of them. Here rank a's addresses are shifted by a x 2^16 and {@code reach} shifts them back;
   * an untranslated copy would read the wrong bytes.
   */
  @Test
  void betweenProcessesPostedAddressesAndEventsAreTranslated() throws Exception {
    int ranks = 3;
    long shift = 1 << 16;
    Fake dev = new Fake(ranks);
    SplittableRandom rnd = TestSeed.fresh().random();
    long[][] bytes = new long[ranks][ranks];
    long[][] sendAt = new long[ranks][ranks];
    long[][] recvAt = new long[ranks][ranks];
    int next = 1;
    for (int a = 0; a < ranks; a++) {
      for (int b = 0; b < ranks; b++) {
        bytes[a][b] = 1 + rnd.nextInt(300);
        sendAt[a][b] = next;
        for (int i = 0; i < bytes[a][b]; i++) dev.memory[next - 1 + i] = (byte) rnd.nextInt();
        next += (int) bytes[a][b];
        recvAt[b][a] = next;
        next += (int) bytes[a][b];
      }
    }
    byte[] before = dev.memory.clone();
    List<Object> got = NativeTestSupport.ranks(ranks, r -> (w -> {
      try (var t = io.moeyard.engine.shm.ShmTransport.open(w, java.time.Duration.ofSeconds(10))) {
        long[] own = new long[ranks];
        for (int q = 0; q < ranks; q++) own[q] = sendAt[r][q] + r * shift; // this rank's "own" addresses
        long[] recvBytes = new long[ranks];
        for (int q = 0; q < ranks; q++) recvBytes[q] = bytes[q][r];
        PeerCopyChannel ch = new PeerCopyChannel(t, dev, true);
        ch.reach(new PeerCopyChannel.Peers() {
          @Override
          public long address(int peer, long posted) {
            return posted - peer * shift;
          }

          @Override
          public long event(int peer, int which, long posted) {
            return 0xF000 + 2 * peer + which; // the peer's events as opened here
          }
        });
        ch.exchange(own, bytes[r].clone(), recvAt[r], recvBytes, stream(r));
        ch.close();
        return null;
      }
    }));
    for (Object o : got) if (o instanceof RuntimeException e) throw e;
    for (int a = 0; a < ranks; a++) {
      for (int b = 0; b < ranks; b++) {
        assertArrayEquals(Arrays.copyOfRange(before, (int) sendAt[a][b] - 1, (int) (sendAt[a][b] - 1 + bytes[a][b])),
            Arrays.copyOfRange(dev.memory, (int) recvAt[b][a] - 1, (int) (recvAt[b][a] - 1 + bytes[a][b])),
            "message " + a + " -> " + b);
      }
    }
    for (int r = 0; r < ranks; r++) {
      for (String line : dev.log.get(r)) {
        if (line.startsWith("wait ")) assertTrue(line.startsWith("wait f0"), "rank " + r + " waits for an opened event: " + dev.log.get(r));
      }
    }
  }

  /** Sizes that do not pair up, or a bad argument on one rank: every rank fails with one message, nothing copied. */
  @Test
  void mismatchesAndBadArgumentsFailEveryRank() {
    for (int which = 0; which < 3; which++) {
      int w = which;
      Fake dev = new Fake(3);
      List<String> msgs;
      try (CpuWorld world = CpuWorld.create(new Topology(1, 3))) {
        msgs = world.run(t -> {
          int r = t.rank();
          long[] send = {r == 0 ? 0 : 0x100, r == 1 ? 0 : 0x200, r == 2 ? 0 : 0x300};
          long[] sendBytes = {r == 0 ? 0 : 8, r == 1 ? 0 : 8, r == 2 ? 0 : 8};
          long[] recv = {r == 0 ? 0 : 0x400, r == 1 ? 0 : 0x500, r == 2 ? 0 : 0x600};
          long[] recvBytes = sendBytes.clone();
          if (w == 0 && r == 1) recvBytes[0] = 16; // rank 1 expects more from rank 0
          if (w == 1 && r == 2) sendBytes[1] = -1;
          if (w == 2 && r == 0) recv = new long[2];
          PeerCopyChannel ch = new PeerCopyChannel(t, dev);
          try {
            long[] s = send;
            long[] rc = recv;
            return assertThrows(CollectiveException.class, () -> ch.exchange(s, sendBytes, rc, recvBytes, stream(r))).getMessage();
          } finally {
            ch.close();
          }
        });
      }
      assertEquals(msgs.get(0), msgs.get(1));
      assertEquals(msgs.get(0), msgs.get(2));
      String want = switch (which) {
        case 0 -> "device channel: rank 0 sends 8 bytes to rank 1, which expects 16";
        case 1 -> "device channel: rank 2: send bytes for rank 1 is -1";
        default -> "device channel: rank 0: receive: 2 addresses and 3 sizes for 3 ranks";
      };
      assertEquals(want, msgs.get(0));
      for (List<String> l : dev.log) assertTrue(l.stream().noneMatch(c -> c.startsWith("copy")), l.toString());
    }
  }

  @Test
  void closedChannelRefusesAndClosesOnce() {
    Fake dev = new Fake(1);
    try (CpuWorld world = CpuWorld.create(new Topology(1, 1))) {
      world.run(t -> {
        PeerCopyChannel ch = new PeerCopyChannel(t, dev);
        ch.close();
        ch.close();
        assertEquals("rank 0: the peer-copy channel is closed", assertThrows(IllegalStateException.class,
            () -> ch.exchange(new long[1], new long[1], new long[1], new long[1], stream(0))).getMessage());
        return null;
      });
    }
    assertEquals(List.of("e001", "e002"), dev.destroyed);
  }
}
