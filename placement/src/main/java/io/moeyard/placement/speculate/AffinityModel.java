package io.moeyard.placement.speculate;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moeyard.placement.format.PlacementWriter;
import io.moeyard.placement.trace.RoutingTrace;
import io.moeyard.placement.trace.TraceFormatException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * Which experts follow which, counted on a training trace: per layer, how many tokens chose each
 * expert ({@code loads}), and for every pair (a, b) how many tokens chose a one layer earlier
 * ({@code next}) or two layers earlier ({@code skip}) and b at this layer. Only counts are kept;
 * smoothing and weighting are the {@link ExpertPredictor}'s business, so a model file stays a
 * plain statistic of its trace and two models can be compared or summed.
 *
 * <p>File format (JSON, written atomically):
 *
 * <pre>
 * {"format": "moeyard-affinity", "version": 1, "layers": L, "experts": E, "tokens": N,
 *  "loads": [L][E],
 *  "next":  [L][[a, b, n], ...],   // entry l: tokens with a at l-1 and b at l (layer 0: empty)
 *  "skip":  [L][[a, b, n], ...]}   // entry l: tokens with a at l-2 and b at l (layers 0, 1: empty)
 * </pre>
 *
 * Pairs are listed only where n &gt; 0, so a model of a sparse router stays as small as its
 * evidence. A token that lists one expert twice in a layer counts it once.
 */
public final class AffinityModel {
  public static final String FORMAT = "moeyard-affinity";
  public static final int VERSION = 1;
  private static final ObjectMapper JSON = new ObjectMapper();

  private final int layers;
  private final int experts;
  private final long tokens;
  private final long[][] loads;
  private final long[][][] next;
  private final long[][][] skip;

  private AffinityModel(int layers, int experts, long tokens, long[][] loads, long[][][] next, long[][][] skip) {
    this.layers = layers;
    this.experts = experts;
    this.tokens = tokens;
    this.loads = loads;
    this.next = next;
    this.skip = skip;
  }

  /** Counts over all tokens of {@code traces}, which must agree on layers and experts. */
  public static AffinityModel learn(List<RoutingTrace> traces) {
    if (traces.isEmpty()) throw new IllegalArgumentException("no training trace");
    int L = traces.get(0).layers(), E = traces.get(0).experts();
    for (RoutingTrace t : traces) {
      if (t.layers() != L || t.experts() != E) {
        throw new IllegalArgumentException(t.name() + ": " + t.layers() + " layers x " + t.experts() + " experts, "
            + traces.get(0).name() + " has " + L + " x " + E);
      }
    }
    long[][] loads = new long[L][E];
    long[][][] next = new long[L][E][E];
    long[][][] skip = new long[L][E][E];
    long tokens = 0;
    for (RoutingTrace t : traces) {
      int K = t.topk();
      int[] ids = t.ids();
      int[][] sets = new int[3][K];
      int[] sizes = new int[3];
      for (int tok = 0; tok < t.tokens(); tok++) {
        tokens++;
        for (int l = 0; l < L; l++) {
          // sets[l % 3] holds layer l, so l-1 and l-2 are still there
          int cur = l % 3;
          sizes[cur] = distinct(ids, (tok * L + l) * K, K, sets[cur]);
          for (int i = 0; i < sizes[cur]; i++) {
            int b = sets[cur][i];
            loads[l][b]++;
            if (l >= 1) {
              int p = (l + 2) % 3;
              for (int j = 0; j < sizes[p]; j++) next[l][sets[p][j]][b]++;
            }
            if (l >= 2) {
              int p = (l + 1) % 3;
              for (int j = 0; j < sizes[p]; j++) skip[l][sets[p][j]][b]++;
            }
          }
        }
      }
    }
    return new AffinityModel(L, E, tokens, loads, next, skip);
  }

  /** Copies the distinct non-negative ids of {@code ids[base, base + k)} into {@code out}; returns how many. */
  static int distinct(int[] ids, int base, int k, int[] out) {
    int n = 0;
    outer:
    for (int i = 0; i < k; i++) {
      int e = ids[base + i];
      if (e < 0) continue;
      for (int j = 0; j < n; j++) if (out[j] == e) continue outer;
      out[n++] = e;
    }
    return n;
  }

  public int layers() {
    return layers;
  }

  public int experts() {
    return experts;
  }

  /** Training tokens the counts came from. */
  public long tokens() {
    return tokens;
  }

  /** Tokens that chose expert {@code e} at {@code layer}. */
  public long load(int layer, int e) {
    return loads[layer][e];
  }

  /** Tokens that chose {@code a} at {@code layer - 1} and {@code b} at {@code layer}; 0 for layer 0. */
  public long next(int layer, int a, int b) {
    return layer < 1 ? 0 : next[layer][a][b];
  }

  /** Tokens that chose {@code a} at {@code layer - 2} and {@code b} at {@code layer}; 0 for layers 0 and 1. */
  public long skip(int layer, int a, int b) {
    return layer < 2 ? 0 : skip[layer][a][b];
  }

  public void write(Path out) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("format", FORMAT);
    root.put("version", VERSION);
    root.put("layers", layers);
    root.put("experts", experts);
    root.put("tokens", tokens);
    ArrayNode l = root.putArray("loads");
    for (long[] row : loads) {
      ArrayNode r = l.addArray();
      for (long v : row) r.add(v);
    }
    root.set("next", pairs(next, 1));
    root.set("skip", pairs(skip, 2));
    PlacementWriter.writeAtomically(out, os -> JSON.writeValue(os, root));
  }

  private static ArrayNode pairs(long[][][] counts, int firstLayer) {
    ArrayNode all = JSON.createArrayNode();
    for (int l = 0; l < counts.length; l++) {
      ArrayNode layer = all.addArray();
      if (l < firstLayer) continue;
      for (int a = 0; a < counts[l].length; a++) {
        for (int b = 0; b < counts[l][a].length; b++) {
          if (counts[l][a][b] > 0) layer.addArray().add(a).add(b).add(counts[l][a][b]);
        }
      }
    }
    return all;
  }

  /** Reads a model file; anything malformed fails naming the file and the value. */
  public static AffinityModel read(Path f) throws IOException {
    JsonNode root;
    try {
      root = JSON.readTree(f.toFile());
    } catch (JsonProcessingException e) {
      throw new TraceFormatException(f + ": malformed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject() || !FORMAT.equals(root.path("format").asText())) {
      throw new TraceFormatException(f + ": not an affinity model (no \"format\": \"" + FORMAT + "\")");
    }
    if (root.path("version").asInt() != VERSION) {
      throw new TraceFormatException(f + ": affinity model version " + root.path("version") + ", this build reads " + VERSION);
    }
    int L = root.path("layers").asInt(0), E = root.path("experts").asInt(0);
    if (L <= 0 || E <= 0) throw new TraceFormatException(f + ": layers " + root.path("layers") + " and experts " + root.path("experts") + " must be positive");
    long tokens = root.path("tokens").asLong(-1);
    if (tokens < 0) throw new TraceFormatException(f + ": tokens " + root.path("tokens") + " is not a count");
    JsonNode l = root.path("loads");
    if (!l.isArray() || l.size() != L) throw new TraceFormatException(f + ": loads must be [" + L + "][" + E + "]");
    long[][] loads = new long[L][E];
    for (int i = 0; i < L; i++) {
      JsonNode row = l.get(i);
      if (!row.isArray() || row.size() != E) throw new TraceFormatException(f + ": loads[" + i + "] must have " + E + " counts");
      for (int e = 0; e < E; e++) loads[i][e] = count(row.get(e), f, "loads[" + i + "][" + e + "]");
    }
    return new AffinityModel(L, E, tokens, loads, readPairs(root.path("next"), f, "next", L, E), readPairs(root.path("skip"), f, "skip", L, E));
  }

  private static long[][][] readPairs(JsonNode all, Path f, String key, int L, int E) {
    if (!all.isArray() || all.size() != L) throw new TraceFormatException(f + ": " + key + " must list " + L + " layers");
    long[][][] out = new long[L][E][E];
    for (int l = 0; l < L; l++) {
      for (JsonNode p : all.get(l)) {
        if (!p.isArray() || p.size() != 3) throw new TraceFormatException(f + ": " + key + "[" + l + "] holds " + p + ", not [a, b, n]");
        int a = p.get(0).asInt(-1), b = p.get(1).asInt(-1);
        if (!p.get(0).canConvertToInt() || !p.get(1).canConvertToInt() || a < 0 || a >= E || b < 0 || b >= E) {
          throw new TraceFormatException(f + ": " + key + "[" + l + "] pair " + p + " names an expert outside [0, " + E + ")");
        }
        out[l][a][b] = count(p.get(2), f, key + "[" + l + "]");
      }
    }
    return out;
  }

  private static long count(JsonNode v, Path f, String where) {
    if (!v.canConvertToLong() || !v.isIntegralNumber() || v.asLong() < 0) {
      throw new TraceFormatException(f + ": " + where + " = " + v + " is not a count");
    }
    return v.asLong();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof AffinityModel m && m.layers == layers && m.experts == experts && m.tokens == tokens
        && java.util.Arrays.deepEquals(m.loads, loads) && java.util.Arrays.deepEquals(m.next, next)
        && java.util.Arrays.deepEquals(m.skip, skip);
  }

  @Override
  public int hashCode() {
    return java.util.Objects.hash(layers, experts, tokens, java.util.Arrays.deepHashCode(loads));
  }
}
