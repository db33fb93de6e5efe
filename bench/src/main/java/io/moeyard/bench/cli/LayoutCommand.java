package io.moeyard.bench.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.comm.Dispatched;
import io.moeyard.dispatch.Routing;
import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.CpuWorld;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moeyard layout}: where every routed token lands. Runs the real fused dispatch on the
 * CPU backend with each token's row carrying (source rank, source token), then reports, per
 * rank and in receive order, what actually arrived: the tool shows the data path's own result,
 * not a re-derivation of it.
 */
@Command(
    name = "layout",
    mixinStandardHelpOptions = true,
    description = {
      "Shows the receive layout of a routing: per rank, slot counts and, in receive order, [local_slot, src_rank, src_token].",
      "FILE holds {\"ranks\": R, \"experts\": E, \"topk_idx\": [R][T_r][K]} (trivial expert map, E divisible by R; -1 = not routed)."
    })
public final class LayoutCommand implements Callable<Integer> {
  @Option(names = "--routing", required = true, paramLabel = "FILE", description = "routing JSON")
  Path routing;

  @Option(names = "--json", paramLabel = "OUT", description = "write the layout here instead of stdout")
  Path out;

  @Override
  public Integer call() throws IOException {
    ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    int ranks;
    int experts;
    int[][] idx;
    int[] tokens;
    int topk = -1;
    try {
      JsonNode root = om.readTree(routing.toFile());
      if (root == null || !root.isObject()) throw new IllegalArgumentException("expected a JSON object");
      ranks = intField(root, "ranks");
      experts = intField(root, "experts");
      if (ranks < 1) throw new IllegalArgumentException("\"ranks\" must be >= 1, got " + ranks);
      if (experts < 1 || experts % ranks != 0) {
        throw new IllegalArgumentException("\"experts\" (" + experts + ") must be a positive multiple of \"ranks\" (" + ranks + ")");
      }
      JsonNode all = root.get("topk_idx");
      if (all == null || !all.isArray() || all.size() != ranks) {
        throw new IllegalArgumentException("\"topk_idx\" must be an array of " + ranks + " ranks");
      }
      idx = new int[ranks][];
      tokens = new int[ranks];
      for (int r = 0; r < ranks; r++) {
        JsonNode rows = all.get(r);
        if (!rows.isArray()) throw new IllegalArgumentException("topk_idx[" + r + "] must be an array of tokens");
        tokens[r] = rows.size();
        for (int t = 0; t < rows.size(); t++) {
          JsonNode row = rows.get(t);
          if (!row.isArray()) throw new IllegalArgumentException("topk_idx[" + r + "][" + t + "] must be an array");
          if (topk < 0) topk = row.size();
          if (row.size() != topk || topk == 0) {
            throw new IllegalArgumentException("topk_idx[" + r + "][" + t + "] has " + row.size() + " entries, expected " + topk);
          }
        }
      }
      if (topk < 0) topk = 1;
      for (int r = 0; r < ranks; r++) {
        idx[r] = new int[tokens[r] * topk];
        for (int t = 0; t < tokens[r]; t++) {
          for (int k = 0; k < topk; k++) {
            JsonNode v = all.get(r).get(t).get(k);
            if (!v.canConvertToInt()) throw new IllegalArgumentException("topk_idx[" + r + "][" + t + "][" + k + "] is not an integer: " + v);
            idx[r][t * topk + k] = v.asInt();
          }
        }
      }
    } catch (IOException | IllegalArgumentException e) {
      System.err.println("moeyard layout: " + routing + ": " + e.getMessage());
      return 2;
    }
    Topology topo = Topology.singleNode(ranks);
    ExpertMap map = ExpertMap.trivial(topo, experts);
    int k = topk;
    List<ObjectNode> perRank;
    try (CpuWorld world = CpuWorld.create(topo)) {
      int maxTokens = java.util.Arrays.stream(tokens).max().orElse(0);
      perRank = world.run(t -> rankLayout(om, t.rank(), map, tokens[t.rank()], maxTokens, k, idx[t.rank()], t));
    } catch (CollectiveException e) {
      System.err.println("moeyard layout: " + routing + ": " + e.getMessage());
      return 2;
    }
    ObjectNode result = om.createObjectNode();
    ArrayNode arr = result.putArray("ranks");
    perRank.forEach(arr::add);
    if (out == null) {
      System.out.println(om.writeValueAsString(result));
    } else {
      io.moeyard.placement.format.PlacementWriter.writeAtomically(out, os -> om.writeValue(os, result));
    }
    return 0;
  }

  private static ObjectNode rankLayout(
      ObjectMapper om, int rank, ExpertMap map, int tokens, int maxTokens, int topk, int[] idx,
      io.moeyard.engine.transport.Transport t) {
    try (Arena arena = Arena.ofShared()) {
      // each row carries its own origin, exactly representable in fp32
      RowBuffer x = RowBuffer.allocate(arena, tokens, 2, DType.FP32);
      for (int tk = 0; tk < tokens; tk++) {
        x.setFloat(tk, 0, rank);
        x.setFloat(tk, 1, tk);
      }
      float[] w = new float[tokens * topk];
      java.util.Arrays.fill(w, 1f);
      // rows as the real dispatch delivers them
      try (Communicator comm = Communicator.cpu(t, map, CommConfig.of(maxTokens, 2, topk, DType.FP32, DType.FP32))) {
        Dispatched h = comm.dispatch(x, new Routing(tokens, topk, idx, w));
        ObjectNode node = om.createObjectNode();
        node.put("rank", rank);
        ArrayNode counts = node.putArray("slot_counts");
        for (int e = 0; e < h.slots(); e++) counts.add(h.slotCount(e));
        ArrayNode rows = node.putArray("rows");
        int slot = 0;
        for (int row = 0; row < h.receivedRows(); row++) {
          while (row >= h.slotOffset(slot + 1)) slot++;
          ArrayNode r = rows.addArray();
          r.add(slot);
          r.add((int) h.received().getFloat(row, 0));
          r.add((int) h.received().getFloat(row, 1));
        }
        return node;
      }
    }
  }

  private static int intField(JsonNode root, String name) {
    JsonNode v = root.get(name);
    if (v == null || !v.canConvertToInt()) throw new IllegalArgumentException("missing or non-integer \"" + name + "\"");
    return v.asInt();
  }
}
