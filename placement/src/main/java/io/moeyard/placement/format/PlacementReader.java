package io.moeyard.placement.format;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.TraceFormatException;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Reads a placement file in any of the {@link PlacementFormat}s, recognised by its keys, so that a
 * plan written by us or by another tool can be scored on a trace.
 */
public final class PlacementReader {
  private static final ObjectMapper JSON = new ObjectMapper();

  private PlacementReader() {}

  /**
   * @param gpus GPUs the slots are spread over (the SGLang and EPLB files do not say)
   * @param experts logical experts, or 0 to take the largest id + 1
   */
  public static Placement read(Path f, int gpus, int experts) throws IOException {
    JsonNode root;
    try {
      root = JSON.readTree(f.toFile());
    } catch (JsonProcessingException e) {
      throw new TraceFormatException(f + ": malformed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) throw new TraceFormatException(f + ": expected a JSON object");
    int[][] phy2log;
    if (root.has("physical_to_logical_map")) {
      phy2log = matrix(root.get("physical_to_logical_map"), f, "physical_to_logical_map");
    } else if (root.has("phy2log")) {
      phy2log = matrix(root.get("phy2log"), f, "phy2log");
    } else if (root.has("layer_list")) {
      JsonNode layers = root.get("layer_list");
      phy2log = new int[layers.size()][];
      for (JsonNode layer : layers) {
        int l = layer.path("layer_id").asInt(-1);
        if (l < 0 || l >= phy2log.length) throw new TraceFormatException(f + ": bad layer_id " + layer.path("layer_id"));
        JsonNode devices = layer.path("device_list");
        java.util.List<int[]> perDevice = new java.util.ArrayList<>();
        for (int i = 0; i < devices.size(); i++) perDevice.add(null);
        int total = 0;
        for (JsonNode d : devices) {
          int id = d.path("device_id").asInt(-1);
          if (id < 0 || id >= devices.size()) throw new TraceFormatException(f + ": bad device_id " + d.path("device_id"));
          int[] ex = row(d.path("device_expert"), f, "device_expert");
          perDevice.set(id, ex);
          total += ex.length;
        }
        int[] row = new int[total];
        int k = 0;
        for (int[] ex : perDevice) {
          if (ex == null) throw new TraceFormatException(f + ": layer " + l + " is missing a device");
          for (int v : ex) row[k++] = v;
        }
        phy2log[l] = row;
        gpus = devices.size();
      }
    } else {
      throw new TraceFormatException(f + ": no physical_to_logical_map, phy2log or layer_list: not a placement file");
    }
    int e = experts;
    if (e <= 0) for (int[] r : phy2log) for (int v : r) e = Math.max(e, v + 1);
    try {
      return new Placement(e, gpus, phy2log);
    } catch (IllegalArgumentException ex) {
      throw new TraceFormatException(f + ": " + ex.getMessage());
    }
  }

  private static int[][] matrix(JsonNode m, Path f, String key) {
    if (!m.isArray() || m.isEmpty()) throw new TraceFormatException(f + ": " + key + " must be a non-empty [layers][slots] array");
    int[][] out = new int[m.size()][];
    for (int i = 0; i < m.size(); i++) out[i] = row(m.get(i), f, key);
    return out;
  }

  private static int[] row(JsonNode r, Path f, String key) {
    if (!r.isArray()) throw new TraceFormatException(f + ": " + key + " rows must be arrays");
    int[] out = new int[r.size()];
    for (int i = 0; i < r.size(); i++) {
      if (!r.get(i).canConvertToInt()) throw new TraceFormatException(f + ": " + key + " holds " + r.get(i) + ", not an expert id");
      out[i] = r.get(i).asInt();
    }
    return out;
  }
}
