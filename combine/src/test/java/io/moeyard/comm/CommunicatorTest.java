package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.comm.Arrivals;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.OffHeap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiFunction;
import org.junit.jupiter.api.Test;

/**
 * The communicator's own contract: it owns and frees its memory, misuse fails every rank with one
 * named error before any buffer is written, the async and MemorySegment forms give the same bits.
 * (Its results against the reference are {@link DispatchCombinePropertyTest}.)
 */
class CommunicatorTest {
  private static final Topology TOPO = Topology.singleNode(3);
  private static final ExpertMap MAP = ExpertMap.trivial(TOPO, 6);
  private static final int TOKENS = 5;
  private static final int TOPK = 2;
  private static final int HIDDEN = 16;
  private static final CommConfig CFG = CommConfig.of(TOKENS, HIDDEN, TOPK, DType.BF16, DType.BF16);

  private static Routing routing(int rank, int tokens) {
    int[] idx = new int[tokens * TOPK];
    float[] w = new float[tokens * TOPK];
    for (int i = 0; i < idx.length; i++) {
      idx[i] = (i / TOPK * 2 + i % TOPK + rank) % 6;
      w[i] = 0.25f + i % 3;
    }
    return new Routing(tokens, TOPK, idx, w);
  }

  private static RowBuffer rows(Arena arena, int n, long seed) {
    RowBuffer b = RowBuffer.allocate(arena, n, HIDDEN, DType.BF16);
    Workload.fill(b, new SplittableRandom(seed));
    return b;
  }

  @Test
  void thousandsOfCommunicatorsReturnTheirMemory() {
    long before = OffHeap.liveBytes();
    try (CpuWorld world = CpuWorld.create(TOPO)) {
      world.run(t -> {
        try (Arena arena = Arena.ofConfined()) {
          RowBuffer x = rows(arena, TOKENS, t.rank());
          RowBuffer out = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
          for (int i = 0; i < 1000; i++) {
            CommConfig cfg = CFG.withVariant(i % 2 == 0 ? CommConfig.Variant.FUSED : CommConfig.Variant.UNFUSED);
            try (Communicator comm = Communicator.cpu(t, MAP, cfg)) {
              Dispatched d = comm.dispatch(x, routing(t.rank(), TOKENS));
              comm.combine(d, d.received(), out);
            }
          }
        }
        return null;
      });
    }
    assertEquals(before, OffHeap.liveBytes(), "off-heap bytes still live after closing 3000 communicators");
  }

  /** Runs {@code body} on every rank and returns each rank's exception message (null: none). */
  private static List<String> messages(BiFunction<Communicator, Integer, Object> body, CommConfig cfg) {
    try (CpuWorld world = CpuWorld.create(TOPO)) {
      return world.run(t -> {
        try (Communicator comm = Communicator.cpu(t, MAP, cfg)) {
          body.apply(comm, t.rank());
          return null;
        } catch (CollectiveException e) {
          return e.getMessage();
        }
      });
    }
  }

  private static void allSay(List<String> msgs, String expected) {
    for (int r = 0; r < msgs.size(); r++) {
      assertTrue(msgs.get(r) != null && msgs.get(r).contains(expected), "rank " + r + " said " + msgs.get(r) + ", want " + expected);
      assertEquals(msgs.get(0), msgs.get(r), "every rank gets the same message");
    }
  }

  @Test
  void moreTokensThanItWasBuiltForFailsEveryRank() {
    byte poison = 0x3C;
    List<String> msgs;
    try (Arena arena = Arena.ofShared()) {
      RowBuffer[] into = new RowBuffer[3];
      msgs = messages((comm, r) -> {
        int n = r == 2 ? TOKENS + 1 : TOKENS;
        into[r] = RowBuffer.allocate(arena, 64, HIDDEN, DType.BF16);
        into[r].segment().fill(poison);
        return comm.dispatch(rows(arena, n, r), routing(r, n), into[r]);
      }, CFG);
      for (RowBuffer b : into) {
        assertEquals(-1, b.segment().asByteBuffer().mismatch(MemorySegment.ofArray(new byte[(int) b.byteSize()]).fill(poison).asByteBuffer()),
            "a receive buffer was written before the error");
      }
    }
    allSay(msgs, "rank 2: routing has 6 tokens, the communicator was built for at most 5");
  }

  @Test
  void wrongDtypeOrTopkFailsEveryRank() {
    try (Arena arena = Arena.ofShared()) {
      allSay(messages((comm, r) -> comm.dispatch(
          r == 1 ? RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.FP16) : rows(arena, TOKENS, r), routing(r, TOKENS)), CFG),
          "rank 1: x is 16 x fp16, the communicator was built for 16 x bf16");
      allSay(messages((comm, r) -> comm.dispatch(rows(arena, TOKENS, r),
          r == 0 ? new Routing(1, 1, new int[] {0}, new float[] {1}) : routing(r, TOKENS)), CFG),
          "rank 0: routing has top-1, the communicator was built for top-2");
    }
  }

  @Test
  void aTooSmallReceiveBufferIsNamedWithTheNeed() {
    try (Arena arena = Arena.ofShared()) {
      allSay(messages((comm, r) -> comm.dispatch(rows(arena, TOKENS, r), routing(r, TOKENS)), CFG.withReceiveRows(1)),
          "receive buffer holds 1 rows, this dispatch sends it");
    }
  }

  @Test
  void aClosedCommunicatorFailsEveryRankNamingIt() {
    try (Arena arena = Arena.ofShared()) {
      allSay(messages((comm, r) -> {
        if (r == 1) comm.close();
        return comm.dispatch(rows(arena, TOKENS, r), routing(r, TOKENS));
      }, CFG), "rank 1: the communicator is closed");
    }
  }

  @Test
  void aStaleOrForeignHandleFailsEveryRank() {
    try (Arena arena = Arena.ofShared()) {
      allSay(messages((comm, r) -> {
        RowBuffer x = rows(arena, TOKENS, r);
        Dispatched first = comm.dispatch(x, routing(r, TOKENS));
        Dispatched second = comm.dispatch(x, routing(r, TOKENS));
        RowBuffer out = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
        comm.combine(r == 0 ? first : second, second.received(), out);
        return null;
      }, CFG), "rank 0: the dispatch result is from an earlier dispatch");
    }
  }

  @Test
  void asyncAndSegmentFormsGiveTheSameBits() {
    try (CpuWorld world = CpuWorld.create(TOPO); Arena arena = Arena.ofShared()) {
      List<byte[][]> res = world.run(t -> {
        int r = t.rank();
        RowBuffer x = rows(arena, TOKENS, 100 + r);
        Routing rt = routing(r, TOKENS);
        MemorySegment idx = arena.allocateFrom(ValueLayout.JAVA_INT, rt.topkIdx());
        MemorySegment w = arena.allocateFrom(ValueLayout.JAVA_FLOAT, rt.topkWeights());
        RowBuffer y = rows(arena, 64, 200 + r);
        RowBuffer out1 = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
        RowBuffer out2 = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
        RowBuffer out3 = RowBuffer.allocate(arena, TOKENS, HIDDEN, DType.BF16);
        try (Communicator comm = Communicator.cpu(t, MAP, CFG)) {
          comm.combine(comm.dispatch(x, rt), y, out1);
          Dispatched d = comm.dispatchAsync(x, rt).join();
          comm.combineAsync(d, y, out2).join();
          comm.combine(comm.dispatch(x, idx, w, TOKENS), y, out3);
        }
        return new byte[][] {
          bytes(out1, TOKENS), bytes(out2, TOKENS),
          bytes(out3, TOKENS)
        };
      });
      for (byte[][] r : res) {
        assertArrayEquals(r[0], r[1], "async combine");
        assertArrayEquals(r[0], r[2], "routing from segments");
      }
    }
  }

  @Test
  void theReceiveCapacityDefaultsToTheWorstCase() {
    try (CpuWorld world = CpuWorld.create(TOPO)) {
      List<Integer> caps = world.run(t -> {
        try (Communicator comm = Communicator.cpu(t, MAP, CFG)) {
          return comm.receiveCapacity();
        }
      });
      // 3 ranks x 5 tokens x min(top-2, 2 slots per rank)
      assertEquals(List.of(30, 30, 30), caps);
    }
  }

  @Test
  void aShuffledCombineDeliversTheHomeCombinesRowsToTheTargets() {
    TestSeed seed = TestSeed.fresh();
    for (int c = 0; c < 20; c++) {
      Workload wl = Workload.random(seed.value() + c, 12);
      SplittableRandom rnd = new SplittableRandom(seed.value() - c);
      seed.check(() -> checkShuffledCombine(wl, rnd));
    }
  }

  private static void checkShuffledCombine(Workload wl, SplittableRandom rnd) {
    int ranks = wl.ranks();
    int maxTokens = wl.maxTokens();
    CommConfig cfg = wl.config();
    int[][] next = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      next[r] = new int[wl.tokens[r]];
      for (int t = 0; t < next[r].length; t++) next[r][t] = rnd.nextInt(ranks);
    }
    try (CpuWorld world = CpuWorld.create(wl.map.topology()); Arena arena = Arena.ofShared()) {
      RowBuffer[] home = new RowBuffer[ranks];
      RowBuffer[] into = new RowBuffer[ranks];
      long ys = rnd.nextLong();
      List<Arrivals> arrivals = world.run(t -> {
        int r = t.rank();
        RowBuffer x = wl.x(r);
        Routing routing = wl.routing(r);
        try (Communicator comm = Communicator.cpu(t, wl.map, cfg)) {
          RowBuffer y = RowBuffer.allocate(arena, comm.receiveCapacity(), wl.hidden, wl.outType);
          Workload.fill(y, new SplittableRandom(ys + r));
          home[r] = RowBuffer.allocate(arena, wl.tokens[r], wl.hidden, wl.outType);
          comm.combine(comm.dispatch(x, routing), y, home[r]);
          into[r] = RowBuffer.allocate(arena, maxTokens * ranks, wl.hidden, wl.outType);
          return comm.combineShuffled(comm.dispatch(x, routing), y, next[r], into[r]);
        }
      });
      int total = 0;
      for (int d = 0; d < ranks; d++) {
        Arrivals a = arrivals.get(d);
        total += a.rows();
        for (int i = 0; i < a.rows(); i++) {
          int src = a.sourceRank(i);
          int tok = a.sourceToken(i);
          assertEquals(d, next[src][tok], wl + ": row " + i + " of rank " + d + " was not sent there");
          if (i > 0) {
            assertTrue(src > a.sourceRank(i - 1) || (src == a.sourceRank(i - 1) && tok > a.sourceToken(i - 1)), "order");
          }
          long m = MemorySegment.mismatch(home[src].segment(), home[src].rowOffset(tok), home[src].rowOffset(tok) + home[src].rowBytes(),
              into[d].segment(), into[d].rowOffset(i), into[d].rowOffset(i) + into[d].rowBytes());
          assertEquals(-1, m, wl + ": rank " + d + " row " + i + " differs from the home combine of token " + tok + " of rank " + src);
        }
      }
      int tokens = 0;
      for (int n : wl.tokens) tokens += n;
      assertEquals(tokens, total, wl + ": every token arrives exactly once");
    }
  }

  @Test
  void aShuffleTargetOutOfRangeFailsEveryRank() {
    try (Arena arena = Arena.ofShared()) {
      allSay(messages((comm, r) -> {
        Dispatched d = comm.dispatch(rows(arena, TOKENS, r), routing(r, TOKENS));
        int[] next = new int[TOKENS];
        if (r == 2) next[3] = 7;
        return comm.combineShuffled(d, RowBuffer.allocate(arena, comm.receiveCapacity(), HIDDEN, DType.BF16), next,
            RowBuffer.allocate(arena, 64, HIDDEN, DType.BF16));
      }, CFG), "rank 2: nextRank[3] = 7 is outside [0, 3)");
      allSay(messages((comm, r) -> {
        Dispatched d = comm.dispatch(rows(arena, TOKENS, r), routing(r, TOKENS));
        return comm.combineShuffled(d, RowBuffer.allocate(arena, comm.receiveCapacity(), HIDDEN, DType.BF16), new int[TOKENS],
            RowBuffer.allocate(arena, 4, HIDDEN, DType.BF16));
      }, CFG), "rank 0: the shuffle buffer holds 4 rows, 15 tokens arrive");
    }
  }

  private static byte[] bytes(RowBuffer b, int rows) {
    return b.segment().asSlice(b.offset(), rows * b.rowBytes()).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
  }
}
