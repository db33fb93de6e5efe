package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.InvocationTargetException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * {@link NcclChannel} without NCCL: here (NCCL unavailable) it reports the probe's reason at once,
 * also without the bindings on the class path; with a stand-in for the NCCL calls, the grouped
 * exchange (one group, peers from the next rank on, empty entries skipped, the group closed also
 * after a failed call), the argument checks before any call, and who destroys the communicator.
 * The GPU side is {@link NcclChannelGpuTest}.
 */
class NcclChannelTest {
  private static final byte[] ID = new byte[NcclUniqueIds.BYTES];

  @Test
  void withoutNcclCreateAndWrapFailAtOnceWithTheProbesReason() {
    NcclAvailability a = NcclAvailability.get();
    if (a.available()) return; // NcclChannelGpuTest
    assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
      assertEquals(a.message(), assertThrows(CudaUnavailableException.class, () -> NcclChannel.create(ID, 1, 0)).getMessage());
      assertEquals(a.message(), assertThrows(CudaUnavailableException.class, () -> NcclChannel.wrap(0x1000, 1, 0)).getMessage());
    });
  }

  /** In a class loader without the bindings (as in the moeyard command): the probe's message, no linkage error. */
  @Test
  void withoutTheBindingsCreateSaysSo() throws Exception {
    if (NcclAvailability.get().binding() == NcclAvailability.Binding.MOEYARD) return; // libnccl.so.2 loads here: create would run
    URL classes = Path.of(NcclChannel.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toUri().toURL();
    try (URLClassLoader alone = new URLClassLoader(new URL[] {classes}, ClassLoader.getPlatformClassLoader())) {
      Class<?> c = Class.forName(NcclChannel.class.getName(), true, alone);
      InvocationTargetException e = assertThrows(InvocationTargetException.class,
          () -> c.getMethod("create", byte[].class, int.class, int.class).invoke(null, ID, 1, 0));
      assertEquals(CudaUnavailableException.class.getName(), e.getCause().getClass().getName());
      String msg = e.getCause().getMessage();
      assertTrue(msg.startsWith(NcclAvailability.UNAVAILABLE) && msg.contains(NcclNative.SONAME), msg);
      assertTrue(msg.endsWith("; and NCCL's Java bindings (org.bytedeco:cuda, org.bytedeco.cuda.global.nccl) are not on the class path"), msg);
    }
  }

  @Test
  void badPlacesFailBeforeNccl() {
    Log log = new Log();
    assertEquals("the unique id has 5 bytes, NCCL's have 128",
        assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(new byte[5], 1, 0)).getMessage());
    assertEquals("ranks must be >= 1, got 0", assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(ID, 0, 0, log)).getMessage());
    assertEquals("rank 2 outside [0, 2)", assertThrows(IllegalArgumentException.class, () -> NcclChannel.create(ID, 2, 2, log)).getMessage());
    assertEquals("ncclComm is 0", assertThrows(IllegalArgumentException.class, () -> NcclChannel.wrap(0, 1, 0)).getMessage());
    assertTrue(log.calls.isEmpty(), log.calls.toString());
    log.count = 3;
    assertEquals("the communicator has 3 ranks, not 4",
        assertThrows(IllegalArgumentException.class, () -> NcclChannel.wrap(0x77, 4, 0, log)).getMessage());
  }

  /** Rank 1 of 3: one group, peers 2, 0, 1 (itself), each send before its receive, empty entries skipped. */
  @Test
  void oneGroupPeersFromTheNextRankEmptyEntriesSkipped() {
    Log log = new Log();
    try (NcclChannel ch = NcclChannel.create(ID, 3, 1, log)) {
      assertEquals(List.of("init 3 1"), log.take());
      ch.exchange(new long[] {0x100, 0, 0x300}, new long[] {16, 0, 48}, new long[] {0xA00, 0xB00, 0}, new long[] {7, 9, 0}, 0x5);
      assertEquals(List.of("groupStart", "send 0x300 48 to 2 on 0x5", "send 0x100 16 to 0 on 0x5", "recv 0xa00 7 from 0 on 0x5",
          "recv 0xb00 9 from 1 on 0x5", "groupEnd"), log.take());
      ch.exchange(new long[3], new long[3], new long[3], new long[3], 0); // nothing to move: an empty group
      assertEquals(List.of("groupStart", "groupEnd"), log.take());
    }
    assertEquals(List.of("destroy 0xc0"), log.take());
  }

  @Test
  void badExchangeArgumentsFailBeforeAnyCall() {
    Log log = new Log();
    try (NcclChannel ch = NcclChannel.create(ID, 2, 0, log)) {
      log.take();
      long[] two = {0x100, 0x200};
      long[] sizes = {8, 8};
      assertEquals("send: 1 addresses and 2 sizes for 2 ranks",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(new long[1], sizes, two, sizes, 0)).getMessage());
      assertEquals("receive bytes for rank 1 is -3",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(two, sizes, two, new long[] {8, -3}, 0)).getMessage());
      assertEquals("send address for rank 0 is 0 (8 bytes)",
          assertThrows(IllegalArgumentException.class, () -> ch.exchange(new long[] {0, 0x200}, sizes, two, sizes, 0)).getMessage());
      assertTrue(log.calls.isEmpty(), log.calls.toString());
    }
  }

  /** A failed send: the group is still closed, the failure names the call, nothing else is enqueued. */
  @Test
  void aFailedCallStillClosesTheGroup() {
    Log log = new Log();
    log.failSendTo = 0;
    try (NcclChannel ch = NcclChannel.create(ID, 2, 1, log)) {
      log.take();
      CudaException e = assertThrows(CudaException.class,
          () -> ch.exchange(new long[] {0x10, 0x20}, new long[] {4, 4}, new long[] {0x30, 0x40}, new long[] {4, 4}, 0));
      assertEquals("ncclSend failed: stand-in", e.getMessage());
      assertEquals(List.of("groupStart", "groupEnd"), log.take());
    }
  }

  @Test
  void anEnginesCommunicatorIsNeverDestroyed() {
    Log log = new Log();
    log.count = 2;
    NcclChannel ch = NcclChannel.wrap(0x99, 2, 1, log);
    ch.close();
    ch.close();
    assertEquals(List.of("count 0x99"), log.take());
    assertThrows(IllegalStateException.class, () -> ch.exchange(new long[2], new long[2], new long[2], new long[2], 0));
    NcclChannel own = NcclChannel.create(ID, 1, 0, log);
    own.close();
    own.close();
    assertEquals(List.of("init 1 0", "destroy 0xc0"), log.take());
  }

  /** A stand-in that records the calls. */
  static final class Log implements NcclChannel.Nccl {
    final List<String> calls = new ArrayList<>();
    int count;
    int failSendTo = -1;

    List<String> take() {
      List<String> c = List.copyOf(calls);
      calls.clear();
      return c;
    }

    @Override
    public long commInitRank(byte[] uniqueId, int ranks, int rank) {
      calls.add("init " + ranks + " " + rank);
      return 0xC0;
    }

    @Override
    public int commCount(long comm) {
      calls.add("count 0x" + Long.toHexString(comm));
      return count;
    }

    @Override
    public void commDestroy(long comm) {
      calls.add("destroy 0x" + Long.toHexString(comm));
    }

    @Override
    public void groupStart() {
      calls.add("groupStart");
    }

    @Override
    public void groupEnd() {
      calls.add("groupEnd");
    }

    @Override
    public void send(long address, long bytes, int peer, long comm, long stream) {
      if (peer == failSendTo) throw new CudaException("ncclSend failed: stand-in");
      calls.add("send 0x" + Long.toHexString(address) + " " + bytes + " to " + peer + " on 0x" + Long.toHexString(stream));
    }

    @Override
    public void recv(long address, long bytes, int peer, long comm, long stream) {
      calls.add("recv 0x" + Long.toHexString(address) + " " + bytes + " from " + peer + " on 0x" + Long.toHexString(stream));
    }
  }
}
