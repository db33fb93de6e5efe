package io.moeyard.dispatch.internal;

import io.moeyard.dispatch.Routing;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.IntFunction;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

/**
 * Bad input anywhere fails every rank with the same message naming the value, before any
 * receive buffer is touched, and leaves the world usable; a missing rank fails the others with
 * a timeout naming it.
 */
class DispatchBadInputTest {
  static final int RANKS = 4;
  static final int EXPERTS = 8;
  static final int TOPK = 2;
  static final int TOKENS = 5;
  static final int HIDDEN = 16;
  static final byte POISON = (byte) 0x5A;

  /** What one rank passes in one case. */
  record Input(int tokens, int hidden, DType dtype, int[] idx, float[] w, int capacity) {}

  static Input good(int rank) {
    int[] idx = new int[TOKENS * TOPK];
    float[] w = new float[TOKENS * TOPK];
    for (int t = 0; t < TOKENS; t++) {
      idx[t * TOPK] = (t + rank) % EXPERTS;
      idx[t * TOPK + 1] = (t + rank + 3) % EXPERTS;
      w[t * TOPK] = 0.5f;
      w[t * TOPK + 1] = 0.5f;
    }
    return new Input(TOKENS, HIDDEN, DType.BF16, idx, w, 1000);
  }

  static Input withIdx(Input in, int at, int e) {
    int[] idx = in.idx().clone();
    idx[at] = e;
    return new Input(in.tokens(), in.hidden(), in.dtype(), idx, in.w(), in.capacity());
  }

  static Input withW(Input in, int at, float v) {
    float[] w = in.w().clone();
    w[at] = v;
    return new Input(in.tokens(), in.hidden(), in.dtype(), in.idx(), w, in.capacity());
  }

  static Arguments bad(String name, String expected, IntFunction<Input> inputs) {
    return Arguments.of(name, expected, inputs);
  }

  static List<Arguments> cases() {
    return List.of(
        bad("expert id out of range", "rank 2: topkIdx[3][1] = 8 is outside [0, 8)",
            r -> r == 2 ? withIdx(good(r), 3 * TOPK + 1, 8) : good(r)),
        bad("negative expert id other than -1", "topkIdx[0][0] = -2",
            r -> r == 1 ? withIdx(good(r), 0, -2) : good(r)),
        bad("expert repeated in a row", "rank 0: topkIdx[1] selects expert 5 twice",
            r -> r == 0 ? withIdx(withIdx(good(r), 2, 5), 3, 5) : good(r)),
        bad("NaN weight", "rank 3: topkWeights[4][0] = NaN is not finite",
            r -> r == 3 ? withW(good(r), 4 * TOPK, Float.NaN) : good(r)),
        bad("infinite weight", "topkWeights[0][1] = Infinity",
            r -> r == 1 ? withW(good(r), 1, Float.POSITIVE_INFINITY) : good(r)),
        bad("x rows disagree with routing", "rank 1: x has 4 rows but routing has 5 tokens",
            r -> r == 1 ? new Input(4, HIDDEN, DType.BF16, good(r).idx(), good(r).w(), 1000) : good(r)),
        bad("routing arrays disagree with topk", "topkWeights has 9 entries",
            r -> r == 2 ? new Input(TOKENS, HIDDEN, DType.BF16, good(r).idx(), new float[9], 1000) : good(r)),
        bad("ranks disagree on hidden", "ranks disagree on hidden size: rank 0 has 16, rank 3 has 32",
            r -> r == 3 ? new Input(TOKENS, 32, DType.BF16, good(r).idx(), good(r).w(), 1000) : good(r)),
        bad("ranks disagree on dtype", "ranks disagree on dtype: rank 0 has bf16, rank 1 has fp16",
            r -> r == 1 ? new Input(TOKENS, HIDDEN, DType.FP16, good(r).idx(), good(r).w(), 1000) : good(r)),
        bad("receive capacity too small", "rank 2: receive buffer holds 3 rows, this dispatch sends it",
            r -> r == 2 ? new Input(TOKENS, HIDDEN, DType.BF16, good(r).idx(), good(r).w(), 3) : good(r)));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void everyRankFailsWithTheSameMessageAndNoBufferIsTouched(String name, String expected, IntFunction<Input> inputs) {
    Topology topo = Topology.singleNode(RANKS);
    ExpertMap map = ExpertMap.trivial(topo, EXPERTS);
    try (CpuWorld world = CpuWorld.create(topo, Duration.ofSeconds(20)); Arena arena = Arena.ofShared()) {
      RowBuffer[] recv = new RowBuffer[RANKS];
      for (int r = 0; r < RANKS; r++) {
        Input in = inputs.apply(r);
        recv[r] = RowBuffer.allocate(arena, in.capacity(), in.hidden(), in.dtype());
        recv[r].segment().fill(POISON);
      }
      List<String> messages = world.run(t -> {
        Input in = inputs.apply(t.rank());
        RowBuffer x = RowBuffer.allocate(Arena.ofAuto(), in.tokens(), in.hidden(), in.dtype());
        try {
          new FusedDispatcher(t, map).dispatch(x, new Routing(TOKENS, TOPK, in.idx(), in.w()), recv[t.rank()]).close();
          return "no error on rank " + t.rank();
        } catch (CollectiveException e) {
          return e.getMessage();
        }
      });
      for (int r = 0; r < RANKS; r++) {
        assertTrue(messages.get(r).contains(expected), "rank " + r + " said: " + messages.get(r));
        assertEquals(messages.get(0), messages.get(r), "ranks must report the same error");
        long n = recv[r].segment().byteSize();
        for (long i = 0; i < n; i++) {
          if (recv[r].segment().get(ValueLayout.JAVA_BYTE, i) != POISON) fail("rank " + r + " receive buffer was touched at byte " + i);
        }
      }
      // the world is still usable: a good dispatch goes through on every rank
      List<Integer> rows = world.run(t -> {
        Input in = good(t.rank());
        RowBuffer x = RowBuffer.allocate(Arena.ofAuto(), in.tokens(), in.hidden(), in.dtype());
        try (DispatchHandle h = new FusedDispatcher(t, map).dispatch(x, new Routing(TOKENS, TOPK, in.idx(), in.w()))) {
          return h.receivedRows();
        }
      });
      assertEquals(RANKS * TOKENS * TOPK, rows.stream().mapToInt(Integer::intValue).sum());
    }
  }

  @Test
  void aRankThatNeverArrivesFailsTheOthersNamingIt() throws Exception {
    Topology topo = Topology.singleNode(3);
    ExpertMap map = ExpertMap.trivial(topo, 6);
    try (CpuWorld world = CpuWorld.create(topo, Duration.ofMillis(300))) {
      ExecutorService pool = Executors.newFixedThreadPool(2);
      List<Future<Throwable>> fs = new ArrayList<>();
      for (int r = 0; r < 2; r++) { // rank 2 never calls dispatch
        int rank = r;
        fs.add(pool.submit(() -> {
          try {
            RowBuffer x = RowBuffer.allocate(Arena.ofAuto(), 1, 8, DType.FP32);
            new FusedDispatcher(world.transport(rank), map).dispatch(x, new Routing(1, 1, new int[] {0}, new float[] {1}));
            return null;
          } catch (Throwable e) {
            return e;
          }
        }));
      }
      for (Future<Throwable> f : fs) {
        Throwable e = f.get();
        assertNotNull(e, "dispatch must not succeed without rank 2");
        CollectiveTimeoutException te = assertInstanceOf(CollectiveTimeoutException.class, e);
        assertEquals(List.of(2), te.missingRanks());
        assertTrue(te.getMessage().contains("rank(s) [2] did not reach the collective"), te.getMessage());
      }
      pool.shutdownNow();
      assertTrue(world.aborted());
    }
  }

  @Test
  void aRankThatCrashesFailsTheOthersFastNamingIt() {
    Topology topo = Topology.singleNode(3);
    ExpertMap map = ExpertMap.trivial(topo, 6);
    try (CpuWorld world = CpuWorld.create(topo, Duration.ofSeconds(30))) {
      long t0 = System.nanoTime();
      RuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(RuntimeException.class, () -> world.run(t -> {
        if (t.rank() == 1) throw new IllegalStateException("expert FFN blew up");
        RowBuffer x = RowBuffer.allocate(Arena.ofAuto(), 1, 8, DType.FP32);
        new FusedDispatcher(t, map).dispatch(x, new Routing(1, 1, new int[] {0}, new float[] {1}));
        return null;
      }));
      String all = e.getMessage() + " " + java.util.Arrays.toString(e.getSuppressed());
      assertTrue(all.contains("expert FFN blew up"), all);
      assertTrue(java.util.Arrays.stream(e.getSuppressed()).anyMatch(s -> s.getMessage().contains("rank 1 failed")), all);
      assertTrue(System.nanoTime() - t0 < 10_000_000_000L, "others must not wait for the 30 s timeout");
    }
  }
}
