package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaIpc}'s exchange on a real process rendezvous (ranks on threads) with a stand-in for
 * the CUDA calls: who maps what, the same verdict on every rank when one rank cannot export or
 * map, every mapping released once. And here (no driver) the real probe's reason, with
 * {@code open} failing every rank with it rather than hanging. The GPU side is
 * {@link CudaIpcGpuTest}.
 */
class CudaIpcTest {
  private static final TestSeed SEED = TestSeed.fresh();
  private static final int HANDLE = 64;
  private static final int EVENT_HANDLE = 64;

  @Test
  void unavailableHereWithTheBackendsReasonAndOpenFailsEveryRank() throws Exception {
    NativeTestSupport.requireLibrary();
    CudaIpc.Availability a = CudaIpc.availability();
    System.out.println("CudaIpcTest: " + a.message());
    if (a.available()) return; // a GPU machine: CudaIpcGpuTest covers it
    assertTrue(a.message().startsWith(CudaIpc.UNAVAILABLE), a.message());
    if (!CudaAvailability.get().available()) assertEquals(CudaAvailability.get().reason(), a.reason());
    assertEquals(a.message(), assertThrows(CudaUnavailableException.class, a::require).getMessage());
    for (Object o : NativeTestSupport.ranks(2, r -> (w -> CudaIpc.open(w, 0x1000L * (r + 1), 256)))) {
      CudaException e = assertInstanceOf(CudaException.class, o);
      assertEquals("rank 0 could not share its device buffer: " + a.message(), e.getMessage());
    }
  }

  /**
   * The GPU test's processes (launch, torchrun variables, rendezvous) here, where CUDA IPC is
   * unavailable: each rank gets through the rendezvous, says why, and exits 3.
   */
  @Test
  void theGpuTestsProcessesStartMeetAndReportUnavailability() throws Exception {
    NativeTestSupport.requireLibrary();
    CudaIpc.Availability a = CudaIpc.availability();
    if (a.available()) return; // CudaIpcGpuTest runs them for real
    List<CudaIpcGpuTest.Rank> ranks = CudaIpcGpuTest.start(2, CudaIpcRankMain.class.getName(), "1", "64");
    String all = CudaIpcGpuTest.finish(ranks, 60);
    for (int r = 0; r < 2; r++) {
      assertEquals(3, ranks.get(r).process().exitValue(), all);
      assertTrue(ranks.get(r).text().contains("cuda-ipc rank " + r + ": " + a.message()), all);
    }
  }

  /** Every rank maps every peer's buffer, keeps its own, and unmaps each mapping once on close. */
  @Test
  void everyRankMapsEveryPeerOnce() throws Exception {
    SplittableRandom rnd = SEED.random();
    SEED.check(() -> {
      for (int n : new int[] {1, 2, 3, 5}) {
        long[] own = new long[n];
        long[] size = new long[n];
        for (int r = 0; r < n; r++) {
          own[r] = (1L + rnd.nextInt(1 << 20)) << 8;
          size[r] = 1 + rnd.nextInt(1 << 16);
        }
        Fake[] fakes = new Fake[n];
        for (int r = 0; r < n; r++) fakes[r] = new Fake(r, -1, -1);
        List<Object> got = NativeTestSupport.ranks(n, r -> (w -> {
          try (CudaIpc ipc = CudaIpc.open(w, own[r], size[r], fakes[r])) {
            long[] seen = new long[n];
            for (int p = 0; p < n; p++) {
              seen[p] = ipc.address(p);
              assertEquals(size[p], ipc.bytes(p), "rank " + r + " sees rank " + p + "'s size");
            }
            assertEquals(n, ipc.size());
            assertEquals(r, ipc.rank());
            return seen;
          }
        }));
        for (int r = 0; r < n; r++) {
          long[] seen = (long[]) got.get(r);
          for (int p = 0; p < n; p++) {
            long want = p == r ? own[r] : Fake.mapped(r, own[p]);
            assertEquals(want, seen[p], n + " ranks: rank " + r + "'s address of rank " + p);
          }
          assertEquals(n - 1, fakes[r].opened, "rank " + r + " maps each peer once");
          assertTrue(fakes[r].live.isEmpty(), "rank " + r + " left mappings open: " + fakes[r].live);
          assertFalse(fakes[r].closedOwn, "rank " + r + " unmapped its own buffer");
        }
      }
    });
  }

  @Test
  void aRankThatCannotExportFailsEveryRankNamingIt() throws Exception {
    Fake[] fakes = {new Fake(0, -1, -1), new Fake(1, 1, -1), new Fake(2, -1, -1)};
    for (Object o : NativeTestSupport.ranks(3, r -> (w -> CudaIpc.open(w, 0x100L << r, 64, fakes[r])))) {
      CudaException e = assertInstanceOf(CudaException.class, o);
      assertEquals("rank 1 could not share its device buffer: cudaIpcGetMemHandle failed: stand-in", e.getMessage());
    }
    for (Object o : NativeTestSupport.ranks(2, r -> (w -> CudaIpc.open(w, r == 1 ? 0 : 0x100, 64, new Fake(r, -1, -1))))) {
      assertEquals("rank 1 could not share its device buffer: its buffer's address is 0",
          assertInstanceOf(CudaException.class, o).getMessage());
    }
    for (Object o : NativeTestSupport.ranks(2, r -> (w -> CudaIpc.open(w, 0x100, r == 0 ? -4 : 64, new Fake(r, -1, -1))))) {
      assertEquals("rank 0 could not share its device buffer: its buffer has -4 bytes",
          assertInstanceOf(CudaException.class, o).getMessage());
    }
    Fake shortHandle = new Fake(1, -1, -1) {
      @Override
      public byte[] export(long address) {
        return new byte[3];
      }
    };
    for (Object o : NativeTestSupport.ranks(2, r -> (w -> CudaIpc.open(w, 0x100, 64, r == 1 ? shortHandle : new Fake(r, -1, -1))))) {
      assertEquals("rank 1 could not share its device buffer: its IPC handle has 3 bytes, CUDA's have 64",
          assertInstanceOf(CudaException.class, o).getMessage());
    }
  }

  /** Rank 2 cannot map rank 0's buffer: every rank fails naming both, and every mapping made is released. */
  @Test
  void aRankThatCannotMapFailsEveryRankAndReleasesItsMappings() throws Exception {
    Fake[] fakes = {new Fake(0, -1, -1), new Fake(1, -1, -1), new Fake(2, -1, 1)};
    for (Object o : NativeTestSupport.ranks(3, r -> (w -> CudaIpc.open(w, 0x100L << r, 64, fakes[r])))) {
      CudaException e = assertInstanceOf(CudaException.class, o);
      assertEquals("rank 2 could not map rank 1's device buffer: cudaIpcOpenMemHandle failed: stand-in", e.getMessage());
    }
    for (Fake f : fakes) assertTrue(f.live.isEmpty(), "rank " + f.rank + " left " + f.live + " mapped");
    assertEquals(2, fakes[0].opened);
    assertEquals(1, fakes[2].opened, "rank 2 mapped rank 0, then failed on rank 1");
  }

  /**
   * After a failed mapping no rank returns (and frees its own buffer) while a peer still maps it:
   * rank 1 releases its mappings slowly, and every rank, on its way out, finds every mapping of
   * every rank released.
   */
  @Test
  void aFailedMappingReturnsOnlyOnceEveryPeerHasUnmapped() throws Exception {
    Fake slow = new Fake(1, -1, -1) {
      @Override
      public void close(long address) {
        try {
          Thread.sleep(100);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        super.close(address);
      }
    };
    Fake[] fakes = {new Fake(0, -1, -1), slow, new Fake(2, -1, 1)};
    boolean[][] releasedOnReturn = new boolean[3][3];
    List<Object> out = NativeTestSupport.ranks(3, r -> (w -> {
      try {
        return CudaIpc.open(w, 0x100L << r, 64, fakes[r]);
      } catch (CudaException e) {
        for (int q = 0; q < 3; q++) {
          synchronized (fakes[q]) {
            releasedOnReturn[r][q] = fakes[q].live.isEmpty();
          }
        }
        throw e;
      }
    }));
    for (int r = 0; r < 3; r++) {
      assertInstanceOf(VerdictException.class, out.get(r), "rank " + r);
      for (int q = 0; q < 3; q++) assertTrue(releasedOnReturn[r][q], "rank " + r + " returned while rank " + q + " still mapped a peer");
    }
  }

  /** Events go round with the buffer: each rank holds every peer's events once, its own as given, and closes each opened one. */
  @Test
  void eventsGoRoundWithTheBuffer() throws Exception {
    for (int n : new int[] {1, 2, 4}) {
      Fake[] fakes = new Fake[n];
      for (int r = 0; r < n; r++) fakes[r] = new Fake(r, -1, -1);
      List<Object> got = NativeTestSupport.ranks(n, r -> (w -> {
        long[] mine = {0x10_000L * (r + 1) + 1, 0x10_000L * (r + 1) + 2, 0x10_000L * (r + 1) + 3};
        try (CudaIpc ipc = CudaIpc.open(CudaIpc.Exchange.of(w), 0x100L << r, 64, mine, fakes[r])) {
          long[][] seen = new long[n][3];
          for (int p = 0; p < n; p++) for (int i = 0; i < 3; i++) seen[p][i] = ipc.event(p, i);
          assertEquals(3L * (n - 1), fakes[r].liveEvents.size(), "rank " + r + " holds each peer's events once");
          return seen;
        }
      }));
      for (int r = 0; r < n; r++) {
        long[][] seen = (long[][]) got.get(r);
        for (int p = 0; p < n; p++) {
          for (int i = 0; i < 3; i++) {
            long own = 0x10_000L * (p + 1) + 1 + i;
            assertEquals(p == r ? own : Fake.mapped(r, own) + 1, seen[p][i], "rank " + r + "'s event " + i + " of rank " + p);
          }
        }
        assertTrue(fakes[r].liveEvents.isEmpty(), "rank " + r + " left events open: " + fakes[r].liveEvents);
        assertTrue(fakes[r].live.isEmpty(), "rank " + r + " left mappings open: " + fakes[r].live);
      }
    }
  }

  /** With {@code reach}, a rank maps only the peers it marks (those of its machine); the others read 0. */
  @Test
  void onlyReachablePeersAreMapped() throws Exception {
    int n = 4;
    Fake[] fakes = new Fake[n];
    for (int r = 0; r < n; r++) fakes[r] = new Fake(r, -1, -1);
    List<Object> got = NativeTestSupport.ranks(n, r -> (w -> {
      boolean[] reach = new boolean[n];
      for (int q = 0; q < n; q++) reach[q] = q / 2 == r / 2; // machines {0, 1} and {2, 3}
      try (CudaIpc ipc = CudaIpc.open(CudaIpc.Exchange.of(w), 0x100L << r, 64, new long[] {0x10_000L * (r + 1)}, reach, fakes[r])) {
        long[] seen = new long[2 * n];
        for (int q = 0; q < n; q++) {
          seen[q] = ipc.address(q);
          seen[n + q] = ipc.event(q, 0);
        }
        return seen;
      }
    }));
    for (int r = 0; r < n; r++) {
      long[] seen = (long[]) got.get(r);
      for (int q = 0; q < n; q++) {
        boolean same = q / 2 == r / 2;
        long want = q == r ? 0x100L << r : same ? Fake.mapped(r, 0x100L << q) : 0;
        assertEquals(want, seen[q], "rank " + r + "'s address of rank " + q);
        assertEquals(q == r ? 0x10_000L * (r + 1) : same ? Fake.mapped(r, 0x10_000L * (q + 1)) + 1 : 0, seen[n + q],
            "rank " + r + "'s event of rank " + q);
      }
      assertEquals(1, fakes[r].opened, "rank " + r + " maps its one machine peer");
      assertTrue(fakes[r].live.isEmpty() && fakes[r].liveEvents.isEmpty(), "rank " + r + " released everything");
    }
  }

  /** Rank 1 cannot open rank 2's second event: every rank fails naming it, nothing stays open; unequal event counts fail too. */
  @Test
  void aRankThatCannotOpenAnEventFailsEveryRank() throws Exception {
    Fake[] fakes = {new Fake(0, -1, -1), new Fake(1, -1, -1), new Fake(2, -1, -1)};
    fakes[1].failEvent = 0x30_002L;
    for (Object o : NativeTestSupport.ranks(3, r -> (w -> CudaIpc.open(CudaIpc.Exchange.of(w), 0x100L << r, 64,
        new long[] {0x10_000L * (r + 1) + 1, 0x10_000L * (r + 1) + 2}, fakes[r])))) {
      CudaException e = assertInstanceOf(CudaException.class, o);
      assertEquals("rank 1 could not open rank 2's event 1: cudaIpcOpenEventHandle failed: stand-in", e.getMessage());
    }
    for (Fake f : fakes) {
      assertTrue(f.live.isEmpty(), "rank " + f.rank + " left " + f.live + " mapped");
      assertTrue(f.liveEvents.isEmpty(), "rank " + f.rank + " left " + f.liveEvents + " open");
    }
    for (Object o : NativeTestSupport.ranks(2, r -> (w -> CudaIpc.open(CudaIpc.Exchange.of(w), 0x100L << r, 64,
        r == 0 ? new long[] {1} : new long[] {1, 2}, new Fake(r, -1, -1))))) {
      String m = assertInstanceOf(CudaException.class, o).getMessage();
      assertTrue(m.matches("rank [01] shares [12] events, rank [01] [12]"), m);
    }
  }

  /**
   * A stand-in for the CUDA calls of rank {@code rank}: a handle is the exported address; a
   * mapping of address a in rank m is {@link #mapped}(m, a). Fails export when {@code failExport}
   * is this rank, and mapping rank {@code failOpenOf}'s buffer.
   */
  static class Fake implements CudaIpc.Calls {
    final int rank;
    final int failExport;
    final int failOpenOf;
    final Set<Long> live = new HashSet<>();
    int opened;
    boolean closedOwn;
    long own;

    Fake(int rank, int failExport, int failOpenOf) {
      this.rank = rank;
      this.failExport = failExport;
      this.failOpenOf = failOpenOf;
    }

    static long mapped(int rank, long address) {
      return address + ((long) (rank + 1) << 40);
    }

    @Override
    public CudaIpc.Availability availability() {
      return new CudaIpc.Availability(true, null);
    }

    @Override
    public int handleBytes() {
      return HANDLE;
    }

    @Override
    public byte[] export(long address) {
      if (failExport == rank) throw new CudaException("cudaIpcGetMemHandle failed: stand-in");
      own = address;
      return ByteBuffer.allocate(HANDLE).order(ByteOrder.LITTLE_ENDIAN).putLong(address).array();
    }

    @Override
    public synchronized long open(byte[] handle) {
      long address = ByteBuffer.wrap(handle).order(ByteOrder.LITTLE_ENDIAN).getLong();
      if (failOpenOf >= 0 && address == 0x100L << failOpenOf) throw new CudaException("cudaIpcOpenMemHandle failed: stand-in");
      long m = mapped(rank, address);
      assertTrue(live.add(m), "rank " + rank + " mapped " + address + " twice");
      opened++;
      return m;
    }

    @Override
    public synchronized void close(long address) {
      if (address == own) closedOwn = true;
      assertTrue(live.remove(address), "rank " + rank + " unmapped " + address + ", which it had not mapped");
    }

    /** An event handle is the event; an opened event of rank m is {@link #mapped}(m, event) + 1. */
    @Override
    public int eventHandleBytes() {
      return EVENT_HANDLE;
    }

    @Override
    public byte[] exportEvent(long event) {
      return ByteBuffer.allocate(EVENT_HANDLE).order(ByteOrder.LITTLE_ENDIAN).putLong(event).array();
    }

    @Override
    public synchronized long openEvent(byte[] handle) {
      long event = ByteBuffer.wrap(handle).order(ByteOrder.LITTLE_ENDIAN).getLong();
      if (event == failEvent) throw new CudaException("cudaIpcOpenEventHandle failed: stand-in");
      long m = mapped(rank, event) + 1;
      assertTrue(liveEvents.add(m), "rank " + rank + " opened event " + event + " twice");
      return m;
    }

    @Override
    public synchronized void closeEvent(long event) {
      assertTrue(liveEvents.remove(event), "rank " + rank + " closed event " + event + ", which it had not opened");
    }

    final Set<Long> liveEvents = new HashSet<>();
    long failEvent = -1;
  }
}
