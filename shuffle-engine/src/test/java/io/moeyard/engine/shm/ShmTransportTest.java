package io.moeyard.engine.shm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link ShmTransport} with ranks as threads of this JVM, each with its own connection to the store
 * and its own mapping of the control block, as processes would have: what a rank cannot send fails
 * every rank alike, and the calls any thread may make stay clear of the unmapped block. (Processes,
 * deaths and the launcher: bench's ShmTransportProcessTest.)
 */
@Timeout(60)
class ShmTransportTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void nothingLeft() throws InterruptedException {
    pool.shutdownNow();
    assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "a rank thread is still running");
    List<Path> files = ShmFiles.list(ProcessHandle.current().pid());
    assertTrue(files.isEmpty(), "shared-memory files left behind: " + files);
  }

  interface Body {
    Object run(ShmTransport t) throws Exception;
  }

  /** Each rank's body on its own transport: what it returned or the RuntimeException it threw (an AssertionError is rethrown). */
  private List<Object> ranks(int n, Body body) throws Exception {
    int port = ClusterTransportTest.freePort();
    List<Future<Object>> fs = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      fs.add(pool.submit(() -> {
        try (ShmTransport t = ShmTransport.open(ProcessWorld.join(ClusterTransportTest.env(rank, n, port), Map.of("job", "shm"),
            TIMEOUT), TIMEOUT)) {
          try {
            return body.run(t);
          } catch (AssertionError e) {
            t.abort(e);
            throw e;
          }
        } catch (RuntimeException e) {
          return e;
        }
      }));
    }
    List<Object> out = new ArrayList<>();
    for (Future<Object> f : fs) out.add(f.get(50, TimeUnit.SECONDS));
    for (Object o : out) if (o instanceof AssertionError e) throw e;
    return out;
  }

  private static final MessageCodec<MemorySegment> SEGMENT = new MessageCodec<>() {
    @Override
    public void write(MemorySegment s, MessageWriter out) {
      out.putSegment(s);
    }

    @Override
    public MemorySegment read(MessageReader in) {
      return in.getSegment();
    }
  };

  /**
   * A segment outside this rank's peer memory cannot be named to a peer: every rank fails at once
   * naming the rank (it used to fail the sender alone, its peers waiting for it until the
   * timeout), and the world goes on.
   */
  @Test
  void aSegmentNoPeerCanReachFailsEveryRankAndTheWorldGoesOn() throws Exception {
    List<Object> out = ranks(3, t -> {
      long start = System.nanoTime();
      try (Arena arena = Arena.ofConfined()) {
        MemorySegment own = arena.allocate(16);
        CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(t.rank() == 1 ? own : null, SEGMENT));
        long millis = (System.nanoTime() - start) / 1_000_000;
        assertTrue(millis < 5_000, "rank " + t.rank() + " failed after " + millis + " ms (the timeout is 10 s)");
        assertEquals(1L, t.allGather((long) t.rank())[1]);
        return e.getMessage();
      }
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.startsWith("rank 1: ") && m.contains("is not in this rank's peer memory"), m);
    }
  }

  /** A message too big for its slot and for the store: every rank fails at once naming it, and the world goes on. */
  @Test
  void aMessageTooBigForTheStoreFailsEveryRankAtOnce() throws Exception {
    List<Object> out = ranks(2, t -> {
      long start = System.nanoTime();
      byte[] mine = t.rank() == 0 ? new byte[ProcessWorld.MAX_BLOB] : new byte[] {1};
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.allGather(mine));
      long millis = (System.nanoTime() - start) / 1_000_000;
      assertTrue(millis < 5_000, "rank " + t.rank() + " failed after " + millis + " ms (the timeout is 10 s)");
      byte[] big = new byte[ShmTransport.SLOT_BYTES + 1]; // too big for a slot, fine for the store
      big[7] = (byte) t.rank();
      assertEquals(1, ((byte[]) t.allGather(big)[1])[7]);
      return e.getMessage();
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.startsWith("rank 0: ") && m.contains("exceeds the store's limit of " + ProcessWorld.MAX_BLOB), m);
    }
  }

  /**
   * Peer memory on one host: every rank reaches every rank; a segment a rank publishes resolves,
   * on every peer, to the bytes it wrote, and a peer's store into it is seen by its owner; the
   * files are gone once every rank mapped them. A negative size fails every rank naming the rank.
   */
  @Test
  void peerMemoryIsSharedByEveryRankOfTheHost() throws Exception {
    TestSeed seed = TestSeed.fresh();
    long s = seed.value();
    int n = 3;
    List<Object> out = ranks(n, t -> {
      seed.check(() -> {
        int me = t.rank();
        assertTrue(t.peerStores());
        for (int p = 0; p < n; p++) assertTrue(t.reaches(p), "reaches(" + p + ")");
        CollectiveException neg = assertThrows(CollectiveException.class, () -> t.peerMemory(me == 2 ? -5 : 64));
        assertEquals("rank 2 asked for -5 bytes of peer memory (must be >= 0)", neg.getMessage());
        byte[] mine = ClusterTransportTest.pattern(s, 0, me);
        try (PeerMemory mem = t.peerMemory(mine.length + n * Long.BYTES + 64)) {
          t.barrier(); // every rank returned from peerMemory, so every rank unlinked its file
          String prefix = ShmFiles.PREFIX + t.job() + "-rank";
          assertEquals(List.of(), ShmFiles.list(ShmTransport.ownerPid()).stream()
              .filter(f -> f.getFileName().toString().startsWith(prefix)).toList());
          MemorySegment data = mem.allocate(mine.length, 1).copyFrom(MemorySegment.ofArray(mine));
          MemorySegment inbox = mem.allocate((long) n * Long.BYTES, 8);
          Object[] all = t.allGather(new MemorySegment[] {data, inbox}, ClusterTransportTest.SEGMENTS);
          for (int p = 0; p < n; p++) {
            if (p == me) continue;
            MemorySegment[] got = (MemorySegment[]) all[p];
            assertArrayEquals(ClusterTransportTest.pattern(s, 0, p), got[0].toArray(ValueLayout.JAVA_BYTE), "rank " + p + "'s bytes");
            got[1].setAtIndex(ValueLayout.JAVA_LONG, me, s + 10L * me + p);
          }
          t.barrier();
          for (int q = 0; q < n; q++) {
            assertEquals(q == me ? 0 : s + 10L * q + me, inbox.getAtIndex(ValueLayout.JAVA_LONG, q), "rank " + q + "'s note");
          }
          t.barrier(); // nobody unmaps while a peer still reads
        }
      });
      return "ok";
    });
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  /**
   * Peer memory larger than /dev/shm can hold fails every rank at once, naming the rank, the free
   * space and what to do, before anything is touched (a sparse file would have killed the process
   * with a bus error at its first touch beyond the free pages), leaves no file, and the world goes on.
   */
  @Test
  void peerMemoryLargerThanSharedMemoryFailsEveryRankClearly() throws Exception {
    long tooMuch = java.nio.file.Files.getFileStore(ShmFiles.dir()).getUsableSpace() + (1L << 30);
    List<Object> out = ranks(3, t -> {
      CollectiveException e = assertThrows(CollectiveException.class, () -> t.peerMemory(t.rank() == 1 ? tooMuch : 4096));
      assertEquals(1L, t.allGather((long) t.rank())[1]); // the world goes on
      try (PeerMemory mem = t.peerMemory(4096)) {
        mem.allocate(64, 8);
      }
      return e.getMessage();
    });
    for (Object o : out) {
      String m = assertInstanceOf(String.class, o);
      assertTrue(m.startsWith("rank 1 cannot create ") && m.contains("MiB free, this file needs")
          && m.contains("--shm-size"), m);
    }
    assertEquals(List.of(), ShmFiles.list(ShmTransport.ownerPid()));
  }

  /**
   * abort, aborted and checkPeers may come from any thread (a watchdog, a device wait, an error
   * handler), also while the transport closes on another thread and after: they answer and never
   * reach into the unmapped control block (a closed arena's IllegalStateException).
   */
  @Test
  void callsFromAnyThreadWhileAndAfterItClosesNeverReachTheUnmappedBlock() throws Exception {
    List<Object> out = ranks(3, t -> {
      t.barrier();
      return CloseRace.run(pool, t, t::aborted, t);
    });
    assertEquals(List.of("ok", "ok", "ok"), out);
  }

  /**
   * A peer that aborted the world and then left (it saw the failure and closed its transport):
   * between collectives a rank reports the abort, the cause, not the leaving, whichever of the two
   * its check would meet first. (Plain {@code checkPeers} reports the leaving; the transports
   * check the abort word before the peers, but a peer may abort and leave between the two reads.)
   */
  @Test
  void aPeerThatAbortedAndLeftIsReportedByItsAbort() {
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment seg = arena.allocate(ControlBlock.bytes(2, 1024), 4096);
      ControlBlock.format(seg, 2, 1024);
      ControlBlock zero = new ControlBlock(seg, 0, 2, 1024, TIMEOUT.toNanos());
      ControlBlock one = new ControlBlock(seg, 1, 2, 1024, TIMEOUT.toNanos());
      zero.register();
      one.register();
      zero.checkPeersOrTheirAbort(); // nothing wrong yet
      one.abort("rank 1 saw the store fail: world aborted by rank 7: it gave up");
      one.leave();
      CollectiveException left = assertThrows(CollectiveException.class, zero::checkPeers);
      assertTrue(left.getMessage().startsWith("rank 1 left the world"), left.getMessage());
      CollectiveException e = assertThrows(CollectiveException.class, zero::checkPeersOrTheirAbort);
      assertEquals("world aborted by rank 1: rank 1 saw the store fail: world aborted by rank 7: it gave up", e.getMessage());
    }
  }
}
