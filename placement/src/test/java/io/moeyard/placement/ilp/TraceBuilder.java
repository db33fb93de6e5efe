package io.moeyard.placement.ilp;

import io.moeyard.placement.model.PairCounts;
import io.moeyard.placement.model.PlacementProblem;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Test-scope helpers: per-token routing {@code [tokens][layers][topk]} -> loads, transitions and
 * co-activations; a small .npy reader for the ESFT traces; a synthetic trace generator with
 * cross-layer affinity. (The trace module of placement-core replaces these in the product.)
 */
final class TraceBuilder {
  private TraceBuilder() {}

  /** Loads {@code [layer][expert]} of one routing trace. */
  static double[][] loads(int[][][] routing, int layers, int experts) {
    double[][] out = new double[layers][experts];
    for (int[][] tok : routing) for (int l = 0; l < layers; l++) for (int e : tok[l]) if (e >= 0) out[l][e]++;
    return out;
  }

  /** Adds the transitions of one trace into dense {@code [l][a][b]} counts. */
  static void addTransitions(long[][][] acc, int[][][] routing, int layers) {
    for (int[][] tok : routing) {
      for (int l = 0; l + 1 < layers; l++) {
        for (int a : tok[l]) {
          if (a < 0) continue;
          for (int b : tok[l + 1]) if (b >= 0) acc[l][a][b]++;
        }
      }
    }
  }

  /** Adds the same-layer co-activations (a < b) of one trace into dense {@code [l][a][b]} counts. */
  static void addCoactivations(long[][][] acc, int[][][] routing, int layers) {
    for (int[][] tok : routing) {
      for (int l = 0; l < layers; l++) {
        int[] s = tok[l];
        for (int i = 0; i < s.length; i++) {
          for (int j = 0; j < s.length; j++) {
            if (s[i] >= 0 && s[j] >= 0 && s[i] < s[j]) acc[l][s[i]][s[j]]++;
          }
        }
      }
    }
  }

  static PairCounts sparse(long[][] dense) {
    List<long[]> rows = new ArrayList<>();
    for (int a = 0; a < dense.length; a++) for (int b = 0; b < dense[a].length; b++) if (dense[a][b] != 0) rows.add(new long[] {a, b, dense[a][b]});
    int[] f = new int[rows.size()], t = new int[rows.size()];
    long[] c = new long[rows.size()];
    for (int i = 0; i < rows.size(); i++) {
      f[i] = (int) rows.get(i)[0];
      t[i] = (int) rows.get(i)[1];
      c[i] = rows.get(i)[2];
    }
    return new PairCounts(f, t, c);
  }

  /** A problem from several traces (one workload each); transitions and co-activations are summed. */
  static PlacementProblem problem(List<int[][][]> traces, int layers, int experts, int gpus, int nodes, int slots, boolean affinity) {
    double[][][] loads = new double[traces.size()][][];
    long[][][] tr = new long[Math.max(0, layers - 1)][experts][experts];
    long[][][] co = new long[layers][experts][experts];
    for (int w = 0; w < traces.size(); w++) {
      loads[w] = loads(traces.get(w), layers, experts);
      if (affinity) {
        addTransitions(tr, traces.get(w), layers);
        addCoactivations(co, traces.get(w), layers);
      }
    }
    PairCounts[] t = null, c = null;
    if (affinity) {
      t = new PairCounts[layers - 1];
      for (int l = 0; l + 1 < layers; l++) t[l] = sparse(tr[l]);
      c = new PairCounts[layers];
      for (int l = 0; l < layers; l++) c[l] = sparse(co[l]);
    }
    return new PlacementProblem(layers, experts, gpus, nodes, slots, loads, t, c);
  }

  /** Sums the loads of all workloads into one (what a non-robust planner sees). */
  static PlacementProblem summed(PlacementProblem p) {
    double[][] s = new double[p.layers()][p.experts()];
    for (double[][] w : p.loads()) for (int l = 0; l < p.layers(); l++) for (int e = 0; e < p.experts(); e++) s[l][e] += w[l][e];
    return new PlacementProblem(p.layers(), p.experts(), p.gpus(), p.nodes(), p.slots(), new double[][][] {s}, p.transitions(), p.coactivations());
  }

  /**
   * Synthetic routing with cross-layer affinity and skewed loads: each token has a hidden "topic";
   * at each layer, with probability {@code stick} a choice comes from that topic's expert group of
   * the layer (groups are a random permutation per layer), else from a Zipf-skewed global pick.
   */
  static int[][][] synthetic(long seed, int tokens, int layers, int experts, int topk, int topics, double stick, double zipf) {
    SplittableRandom rnd = new SplittableRandom(seed);
    int[][] perm = new int[layers][experts];
    for (int l = 0; l < layers; l++) {
      for (int e = 0; e < experts; e++) perm[l][e] = e;
      for (int e = experts - 1; e > 0; e--) {
        int j = rnd.nextInt(e + 1);
        int t = perm[l][e];
        perm[l][e] = perm[l][j];
        perm[l][j] = t;
      }
    }
    double[] cdf = new double[experts];
    double s = 0;
    for (int e = 0; e < experts; e++) cdf[e] = s += 1 / Math.pow(e + 1, zipf);
    for (int e = 0; e < experts; e++) cdf[e] /= s;
    int groupSize = Math.max(topk, experts / topics);
    int[][][] out = new int[tokens][layers][topk];
    for (int t = 0; t < tokens; t++) {
      int topic = rnd.nextInt(topics);
      for (int l = 0; l < layers; l++) {
        int k = 0;
        int guard = 0;
        while (k < topk) {
          int e;
          if (rnd.nextDouble() < stick) {
            // skewed inside the group too: lower ranks more likely
            int r = (int) Math.floor(Math.pow(rnd.nextDouble(), 1.5) * groupSize);
            e = perm[l][(topic * groupSize + r) % experts];
          } else {
            double u = rnd.nextDouble();
            int lo = 0, hi = experts - 1;
            while (lo < hi) {
              int mid = (lo + hi) >>> 1;
              if (cdf[mid] < u) lo = mid + 1;
              else hi = mid;
            }
            e = perm[(l + 7) % layers][lo];
          }
          boolean dup = false;
          for (int i = 0; i < k; i++) dup |= out[t][l][i] == e;
          if (!dup || ++guard > 100) out[t][l][k++] = e;
        }
      }
    }
    return out;
  }

  /** Reads an int16/int32 little-endian C-order .npy of shape [tokens, layers, topk]. */
  static int[][][] readNpy(Path path) throws IOException {
    byte[] all = Files.readAllBytes(path);
    ByteBuffer bb = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
    if (all[0] != (byte) 0x93 || all[1] != 'N') throw new IOException(path + ": not a .npy file");
    int major = all[6];
    int headerLen;
    int off;
    if (major == 1) {
      headerLen = bb.getShort(8) & 0xffff;
      off = 10;
    } else {
      headerLen = bb.getInt(8);
      off = 12;
    }
    String header = new String(all, off, headerLen, StandardCharsets.ISO_8859_1);
    int data = off + headerLen;
    int bytes;
    if (header.contains("<i2")) bytes = 2;
    else if (header.contains("<i4")) bytes = 4;
    else throw new IOException(path + ": unsupported dtype in " + header);
    if (header.contains("'fortran_order': True")) throw new IOException(path + ": Fortran order not supported");
    String shape = header.substring(header.indexOf("'shape': (") + 10);
    shape = shape.substring(0, shape.indexOf(')'));
    String[] dims = shape.split(",");
    int t = Integer.parseInt(dims[0].trim()), l = Integer.parseInt(dims[1].trim()), k = Integer.parseInt(dims[2].trim());
    int[][][] out = new int[t][l][k];
    int pos = data;
    for (int i = 0; i < t; i++) {
      for (int j = 0; j < l; j++) {
        for (int m = 0; m < k; m++) {
          out[i][j][m] = bytes == 2 ? bb.getShort(pos) : bb.getInt(pos);
          pos += bytes;
        }
      }
    }
    return out;
  }
}
