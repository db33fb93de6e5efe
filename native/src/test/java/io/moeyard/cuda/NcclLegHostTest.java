package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.time.Duration;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * The NCCL leg's set-up between machines ({@link CudaWorld#ncclCommunicator}) on ranks that are
 * threads, with stand-ins for NCCL ({@link NcclChannelTest.Log}): every rank fails alike, before
 * any set-up, when one has no NCCL; a rank whose set-up fails ends the others' at once (they are
 * inside theirs, which NCCL cannot end, until their watch of the transport sees the abort), every
 * communicator aborted; a healthy world gets its channels from rank 0's id.
 */
class NcclLegHostTest {
  private static final Duration LONG = Duration.ofSeconds(60);

  @Test
  void healthyRanksShareRankZerosId() {
    Logs logs = new Logs(3, 5);
    byte[] id = new byte[NcclUniqueIds.BYTES];
    id[7] = 42;
    List<Object> out = run(3, logs, () -> id.clone());
    for (int r = 0; r < 3; r++) {
      NcclChannel ch = assertInstanceOf(NcclChannel.class, out.get(r), "rank " + r);
      assertEquals(r, ch.rank());
      assertEquals(3, ch.ranks());
      ch.close();
      assertEquals(List.of("init 3 " + r, "finalize 0xc0", "destroy 0xc0"), logs.of(r).take());
    }
  }

  @Test
  void aRankWithoutNcclFailsEveryRankBeforeAnySetUp() {
    Logs logs = new Logs(3, 0);
    List<Object> out = run(3, r -> {
      if (r == 1) throw new CudaUnavailableException("NCCL unavailable: stand-in");
      return logs.of(r);
    }, () -> new byte[NcclUniqueIds.BYTES]);
    for (int r = 0; r < 3; r++) {
      CudaException e = assertInstanceOf(CudaException.class, out.get(r), "rank " + r);
      assertEquals("the NCCL leg between machines: rank 1: NCCL unavailable: stand-in", e.getMessage());
      assertTrue(logs.of(r).take().isEmpty(), "no NCCL call on rank " + r);
    }
  }

  @Test
  void aSetUpThatFailsOnOneRankEndsEveryRanksAtOnce() {
    Logs logs = new Logs(3, Integer.MAX_VALUE); // the set-up never finishes where nobody fails it
    logs.of(2).polls = 20;
    logs.of(2).errorAfterPolls = true;
    long t0 = System.nanoTime();
    List<Object> out = run(3, logs, () -> new byte[NcclUniqueIds.BYTES]);
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertTrue(ms < 10_000, "ended by the failing rank's abort, not the " + LONG + " timeout: " + ms + " ms");
    CudaException failed = assertInstanceOf(CudaException.class, out.get(2));
    assertEquals("ncclCommInitRankConfig failed: 6 (stand-in remote error)", failed.getMessage());
    for (int r = 0; r < 2; r++) {
      CollectiveException e = assertInstanceOf(CollectiveException.class, out.get(r), "rank " + r);
      assertTrue(e.getMessage().contains("rank 2") && e.getMessage().contains("ncclCommInitRankConfig failed"), e.getMessage());
    }
    for (int r = 0; r < 3; r++) assertEquals(List.of("init 3 " + r, "abort 0xc0"), logs.of(r).take(), "rank " + r);
  }

  /** Every rank's outcome: its channel, or what it threw. */
  private static List<Object> run(int ranks, Logs logs, Supplier<byte[]> id) {
    return run(ranks, logs::of, id);
  }

  private static List<Object> run(int ranks, java.util.function.IntFunction<NcclChannel.Nccl> calls, Supplier<byte[]> id) {
    return assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
      try (CpuWorld w = CpuWorld.create(Topology.singleNode(ranks), Duration.ofSeconds(20))) {
        return w.run(t -> {
          try {
            return (Object) CudaWorld.ncclCommunicator(t, LONG, () -> calls.apply(t.rank()), id);
          } catch (RuntimeException e) {
            return e;
          }
        });
      }
    });
  }

  /** One stand-in per rank, each in progress for {@code polls} polls. */
  private static final class Logs {
    private final NcclChannelTest.Log[] logs;

    Logs(int ranks, int polls) {
      logs = new NcclChannelTest.Log[ranks];
      for (int r = 0; r < ranks; r++) {
        logs[r] = new NcclChannelTest.Log();
        logs[r].polls = polls;
      }
    }

    NcclChannelTest.Log of(int r) {
      return logs[r];
    }
  }
}
