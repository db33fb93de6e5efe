package io.moeyard.placement.format;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moeyard.placement.model.Placement;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Writes a placement in an engine's format. Files appear whole or not at all (temp file in the
 * same directory, then a rename), so an engine that watches the path never loads half a plan.
 */
public final class PlacementWriter {
  private static final ObjectMapper JSON = new ObjectMapper();

  private PlacementWriter() {}

  public static void write(Placement p, PlacementFormat format, Path out) throws IOException {
    ObjectNode root = toJson(p, format);
    writeAtomically(out, os -> JSON.writeValue(os, root));
  }

  public static ObjectNode toJson(Placement p, PlacementFormat format) {
    ObjectNode root = JSON.createObjectNode();
    switch (format) {
      case SGLANG -> root.set("physical_to_logical_map", matrix(p.phy2log()));
      case EPLB -> {
        root.set("phy2log", matrix(p.phy2log()));
        ArrayNode l2p = root.putArray("log2phy");
        for (int[][] layer : p.log2phy()) l2p.add(matrix(layer));
        root.set("logcnt", matrix(p.logcnt()));
      }
      case VLLM_ASCEND -> {
        root.put("moe_layer_count", p.layers());
        ArrayNode layers = root.putArray("layer_list");
        int per = p.slotsPerGpu();
        for (int l = 0; l < p.layers(); l++) {
          ObjectNode layer = layers.addObject();
          layer.put("layer_id", l);
          layer.put("device_count", p.gpus());
          ArrayNode devices = layer.putArray("device_list");
          for (int g = 0; g < p.gpus(); g++) {
            ObjectNode d = devices.addObject();
            d.put("device_id", g);
            ArrayNode ex = d.putArray("device_expert");
            for (int s = g * per; s < (g + 1) * per; s++) ex.add(p.phy2log()[l][s]);
          }
        }
      }
    }
    return root;
  }

  private static ArrayNode matrix(int[][] m) {
    ArrayNode a = JSON.createArrayNode();
    for (int[] row : m) {
      ArrayNode r = a.addArray();
      for (int v : row) r.add(v);
    }
    return a;
  }

  /** What writes the content; may throw. */
  @FunctionalInterface
  public interface Content {
    void writeTo(OutputStream out) throws IOException;
  }

  /**
   * Writes to a temp file next to {@code out} and renames it into place; on any failure the temp
   * file is deleted and {@code out} is left as it was.
   */
  public static void writeAtomically(Path out, Content content) throws IOException {
    Path abs = out.toAbsolutePath();
    Path dir = abs.getParent();
    if (dir != null && !Files.isDirectory(dir)) {
      throw new java.nio.file.NoSuchFileException(dir.toString(), null, "output directory does not exist");
    }
    Path tmp = Files.createTempFile(dir, "." + abs.getFileName() + ".", ".tmp");
    boolean done = false;
    try {
      try (OutputStream os = Files.newOutputStream(tmp)) {
        content.writeTo(os);
      }
      try {
        Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING);
      }
      done = true;
    } finally {
      if (!done) Files.deleteIfExists(tmp);
    }
  }
}
