package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.DType;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * What one rank per process relies on and a host can check: every rank process carves its relay
 * slab alike (peers translate addresses by the offset from the slab's base), every rank reaches
 * the same verdict on the slabs' sizes, a stalled stream names only the peers it can wait for, and
 * a device wait's timeout is told to the peers rather than left for theirs.
 */
class ProcessRanksHostTest {

  /** Host-side fields of {@link RelayBuffers} (sizes, a call's arguments): not addresses in the slab. */
  private static final Set<String> NOT_IN_SLAB =
      Set.of("base", "bytes", "cursor", "slotBytes", "sendAt", "sendBytes", "recvAt", "recvBytes", "stageRows");

  private static RelayBuffers relayView(KernelShape shape, int rank, int chunk, long base) throws Exception {
    Constructor<RelayBuffers> c = RelayBuffers.class.getDeclaredConstructor(KernelShape.class, int.class, int.class, long.class,
        DeviceArena.class);
    c.setAccessible(true);
    return c.newInstance(shape, rank, chunk, base, null);
  }

  /** Every device address of a relay slab, as offsets from its base, by field (and slot). */
  private static List<String> offsets(RelayBuffers b) throws Exception {
    List<String> out = new ArrayList<>();
    for (Field f : RelayBuffers.class.getDeclaredFields()) {
      if (Modifier.isStatic(f.getModifiers()) || NOT_IN_SLAB.contains(f.getName())) continue;
      f.setAccessible(true);
      if (f.getType() == long.class) {
        out.add(f.getName() + "=" + (f.getLong(b) - b.base));
      } else if (f.getType() == long[].class) {
        long[] a = (long[]) f.get(b);
        for (int i = 0; i < a.length; i++) out.add(f.getName() + "[" + i + "]=" + (a[i] - b.base));
      }
    }
    return out;
  }

  @Test
  void everyRankCarvesItsRelaySlabAlikeWhateverItsNode() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      for (int iter = 0; iter < 100; iter++) {
        DType dt = DType.values()[rnd.nextInt(DType.values().length)];
        int local = 1 + rnd.nextInt(4);
        int nodes = 2 + rnd.nextInt(3);
        int ranks = local * nodes;
        int s = 1 + rnd.nextInt(3);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 8));
        int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(2)) : 8 + rnd.nextInt(400);
        var wl = KernelCases.random(rnd, ranks, local, s, experts, k, hidden, dt, rnd.nextInt(200), 0.1);
        KernelShape shape = KernelCases.shape(wl, rnd.nextInt(300));
        int chunk = 1 + rnd.nextInt(512);
        String at = "iter " + iter + " " + wl + " chunk " + chunk;
        RelayBuffers first = relayView(shape, 0, chunk, 256L * (1 + rnd.nextInt(1 << 20)));
        List<String> want = offsets(first);
        assertTrue(want.size() > 10, "found " + want.size() + " addresses " + at);
        for (int r = 1; r < ranks; r++) {
          RelayBuffers b = relayView(shape, r, chunk, 256L * (1L << 30) * r + 256L * rnd.nextInt(1 << 20));
          assertEquals(first.bytes, b.bytes, "rank " + r + "'s relay slab size " + at);
          assertEquals(want, offsets(b), "rank " + r + " (node " + r / local + ") against rank 0 " + at);
        }
      }
    });
  }

  @Test
  void aSlabOfAnotherSizeIsNamedAlikeOnEveryRank() {
    assertNull(VirtualRanks.differentSize(new long[] {4096}));
    assertNull(VirtualRanks.differentSize(new long[] {4096, 4096, 4096}));
    String want = "rank 2's device memory has 8192 bytes, rank 0's 4096: the ranks were opened for different shapes";
    assertEquals(want, VirtualRanks.differentSize(new long[] {4096, 4096, 8192, 4096}));
    // the rank that differs is named even when rank 0 is the odd one out, and on whichever rank computes it
    assertEquals("rank 1's device memory has 4096 bytes, rank 0's 8192: the ranks were opened for different shapes",
        VirtualRanks.differentSize(new long[] {8192, 4096, 4096}));
  }

  @Test
  void aStallNamesOnlyPeersWithinReachWhoseEventsHaveNotFired() {
    boolean[] all = {true, true, true, true};
    // nothing pending: no peer named, and never the rank itself
    assertEquals(List.of(), VirtualRanks.pending(1, all, q -> true));
    assertEquals(List.of(0, 2, 3), VirtualRanks.pending(1, all, q -> false));
    assertEquals(List.of(3), VirtualRanks.pending(0, all, q -> q != 3));
    // two machines of two ranks: rank 2 never waits for ranks 0 and 1, whatever their events say
    boolean[] reach = {false, false, true, true};
    List<Integer> asked = new ArrayList<>();
    assertEquals(List.of(3), VirtualRanks.pending(2, reach, q -> {
      asked.add(q);
      return false;
    }));
    assertEquals(List.of(3), asked, "only the peers within reach are queried");
  }

  @Test
  void aDeviceWaitsTimeoutIsThisRanksAloneAndAbortsThePeers() {
    assertTrue(CudaCommunicator.peersKnow(new CollectiveException("dispatch: rank 1 would receive 9 rows")));
    assertTrue(CudaCommunicator.peersKnow(new VerdictException("rank 2 could not share its device buffer: out of memory")));
    assertFalse(CudaCommunicator.peersKnow(new CollectiveTimeoutException("rank 0: its stream did not finish", List.of(1))));
    assertFalse(CudaCommunicator.peersKnow(new CudaException("cudaStreamQuery: an illegal memory access")));
    assertFalse(CudaCommunicator.peersKnow(new IllegalStateException("anything else")));
  }
}
