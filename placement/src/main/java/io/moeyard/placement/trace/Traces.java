package io.moeyard.placement.trace;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Opens trace files by content, not by name: a {@code .npy} per-token trace or a JSON
 * {@code {"logical_count": ...}} load trace.
 */
public final class Traces {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Traces() {}

  /**
   * Loads traces that must describe the same model: equal layer counts, and one expert count for
   * all (the given one, or the largest id seen in any of them + 1, since one workload may never
   * touch the last expert).
   *
   * @param experts logical experts per layer, or 0 to infer
   */
  public static List<Trace> load(List<Path> files, int experts) throws IOException {
    if (files.isEmpty()) throw new TraceFormatException("no trace given");
    List<Object> raw = new ArrayList<>();
    int inferred = 0;
    for (Path f : files) {
      Object o = readRaw(f);
      raw.add(o);
      if (o instanceof NpyArray a) inferred = Math.max(inferred, RoutingTrace.maxId(a.data()) + 1);
      if (o instanceof LoadTrace t) {
        if (experts > 0 && t.experts() != experts) {
          throw new TraceFormatException(f + ": logical_count has " + t.experts() + " experts, --experts says " + experts);
        }
        inferred = Math.max(inferred, t.experts());
      }
    }
    int e = experts > 0 ? experts : inferred;
    List<Trace> out = new ArrayList<>();
    for (int i = 0; i < files.size(); i++) {
      Object o = raw.get(i);
      Trace t;
      if (o instanceof NpyArray a) {
        t = RoutingTrace.of(files.get(i).toString(), a, e);
      } else {
        LoadTrace lt = (LoadTrace) o;
        if (lt.experts() != e) {
          throw new TraceFormatException(lt.name() + ": logical_count has " + lt.experts() + " experts, other traces have ids up to "
              + (e - 1) + "; pass --experts");
        }
        t = lt;
      }
      if (!out.isEmpty() && out.get(0).layers() != t.layers()) {
        throw new TraceFormatException(t.name() + ": " + t.layers() + " layers, but " + out.get(0).name() + " has " + out.get(0).layers());
      }
      out.add(t);
    }
    return out;
  }

  /** One trace file; {@code experts <= 0} infers the count from the file. */
  public static Trace load(Path file, int experts) throws IOException {
    return load(List.of(file), experts).get(0);
  }

  private static Object readRaw(Path f) throws IOException {
    if (!Files.exists(f)) throw new TraceFormatException(f + ": no such file");
    if (Files.isDirectory(f)) throw new TraceFormatException(f + ": is a directory, not a trace file");
    byte[] head = new byte[16];
    int n;
    try (InputStream in = Files.newInputStream(f)) {
      n = in.readNBytes(head, 0, head.length);
    } catch (NoSuchFileException e) {
      throw new TraceFormatException(f + ": no such file");
    }
    if (n == 0) throw new TraceFormatException(f + ": file is empty");
    if ((head[0] & 0xff) == 0x93) return NpyReader.read(f);
    int first = 0;
    while (first < n && Character.isWhitespace(head[first])) first++;
    if (first < n && (head[first] == '{' || head[first] == '[')) return readLogicalCount(f);
    throw new TraceFormatException(f + ": neither a .npy routing trace nor a JSON logical_count file");
  }

  /** Reads {@code {"logical_count": [L][E]}}; a 3-D array (per rank or per step) is summed over its first axis. */
  public static LoadTrace readLogicalCount(Path f) throws IOException {
    JsonNode root;
    try {
      root = JSON.readTree(f.toFile());
    } catch (JsonProcessingException e) {
      throw new TraceFormatException(f + ": malformed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) throw new TraceFormatException(f + ": expected a JSON object with \"logical_count\"");
    JsonNode lc = root.get("logical_count");
    if (lc == null) throw new TraceFormatException(f + ": no \"logical_count\" key (a load-only trace needs it)");
    if (!lc.isArray() || lc.isEmpty()) throw new TraceFormatException(f + ": \"logical_count\" must be a non-empty [layers][experts] array");
    boolean threeD = lc.get(0).isArray() && !lc.get(0).isEmpty() && lc.get(0).get(0).isArray();
    if (!threeD) return new LoadTrace(f.toString(), matrix(lc, f));
    double[][] sum = null;
    for (JsonNode m : lc) {
      double[][] x = matrix(m, f);
      if (sum == null) sum = x;
      else {
        if (x.length != sum.length || x[0].length != sum[0].length) throw new TraceFormatException(f + ": logical_count slices disagree in shape");
        for (int l = 0; l < x.length; l++) for (int e = 0; e < x[l].length; e++) sum[l][e] += x[l][e];
      }
    }
    return new LoadTrace(f.toString(), sum);
  }

  private static double[][] matrix(JsonNode m, Path f) {
    if (!m.isArray() || m.isEmpty()) throw new TraceFormatException(f + ": logical_count must be [layers][experts] numbers");
    double[][] out = new double[m.size()][];
    for (int l = 0; l < m.size(); l++) {
      JsonNode row = m.get(l);
      if (!row.isArray() || row.isEmpty()) throw new TraceFormatException(f + ": logical_count[" + l + "] is not a non-empty array");
      out[l] = new double[row.size()];
      for (int e = 0; e < row.size(); e++) {
        JsonNode v = row.get(e);
        if (!v.isNumber()) throw new TraceFormatException(f + ": logical_count[" + l + "][" + e + "] = " + v + " is not a number");
        out[l][e] = v.asDouble();
      }
    }
    return out;
  }
}
