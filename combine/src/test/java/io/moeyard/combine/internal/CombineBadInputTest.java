package io.moeyard.combine.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.internal.UnfusedDispatcher;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Bad combine input on one rank fails every rank alike, before any output row is written. */
class CombineBadInputTest {
  @ParameterizedTest(name = "{0} (fused={1})")
  @CsvSource({
    "out rows, true, rank 1: out has 3 rows, the dispatch had 4 tokens",
    "out rows, false, rank 1: out has 3 rows, the dispatch had 4 tokens",
    "fp8 out, true, rank 1: combine output dtype fp8 is not bf16, fp16 or fp32",
    "expert rows, true, rank 1: expert output has 0 rows",
    "hidden, false, ranks disagree on hidden size: rank 0 has 8, rank 1 has 16",
  })
  void oneBadRankFailsAllBeforeTouchingOutput(String kind, boolean fused, String expected) {
    Topology topo = Topology.singleNode(3);
    ExpertMap map = ExpertMap.trivial(topo, 6);
    int tokens = 4;
    int topk = 2;
    byte poison = (byte) 0x3C;
    try (CpuWorld world = CpuWorld.create(topo); Arena arena = Arena.ofShared()) {
      RowBuffer[] outs = new RowBuffer[3];
      List<String> msgs = world.run(t -> {
        int r = t.rank();
        int[] idx = new int[tokens * topk];
        float[] w = new float[tokens * topk];
        for (int i = 0; i < idx.length; i++) {
          idx[i] = (i / topk * 2 + i % topk + r) % 6;
          w[i] = 0.5f;
        }
        RowBuffer x = RowBuffer.allocate(arena, tokens, 8, DType.BF16);
        boolean bad = r == 1;
        try (DispatchHandle h = (fused ? new FusedDispatcher(t, map) : new UnfusedDispatcher(t, map))
            .dispatch(x, new Routing(tokens, topk, idx, w))) {
          int hidden = bad && kind.equals("hidden") ? 16 : 8;
          DType dt = bad && kind.equals("fp8 out") ? DType.FP8_E4M3 : DType.BF16;
          int outRows = bad && kind.equals("out rows") ? 3 : tokens;
          int yRows = bad && kind.equals("expert rows") ? 0 : h.receivedRows();
          RowBuffer y = dt == DType.FP8_E4M3 ? RowBuffer.allocate(arena, yRows, 128, dt) : RowBuffer.allocate(arena, yRows, hidden, dt);
          RowBuffer out = dt == DType.FP8_E4M3 ? RowBuffer.allocate(arena, outRows, 128, dt) : RowBuffer.allocate(arena, outRows, hidden, dt);
          out.segment().fill(poison);
          outs[r] = out;
          try {
            (fused ? new FusedCombiner(t) : new UnfusedCombiner(t)).combine(h, y, out);
            return "no error on rank " + r;
          } catch (CollectiveException e) {
            return e.getMessage();
          }
        }
      });
      for (int r = 0; r < 3; r++) {
        assertTrue(msgs.get(r).contains(expected), "rank " + r + ": " + msgs.get(r));
        assertEquals(msgs.get(0), msgs.get(r));
        for (long i = 0; i < outs[r].segment().byteSize(); i++) {
          if (outs[r].segment().get(ValueLayout.JAVA_BYTE, i) != poison) fail("rank " + r + " output touched at byte " + i);
        }
      }
    }
  }
}
