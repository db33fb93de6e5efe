package io.moeyard.placement.model;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import java.util.Arrays;
import java.util.List;

/**
 * Where every physical slot's expert lives, per layer: {@code phy2log[layer][slot]} = logical
 * expert. Slots are GPU-major (slot p on GPU p / slotsPerGpu), as SGLang and EPLB number them.
 * Every logical expert has at least one slot.
 *
 * <p>A layer of a placement is exactly what the data path calls an {@link ExpertMap} (its slots are
 * rank-major in the same way): {@link #expertMap} and {@link #of(List)} convert between the two,
 * so a plan read from any file dispatches as written.
 */
public record Placement(int experts, int gpus, int[][] phy2log) {

  public Placement {
    if (phy2log.length == 0) throw new IllegalArgumentException("placement has no layers");
    int slots = phy2log[0].length;
    if (gpus <= 0 || slots % gpus != 0) {
      throw new IllegalArgumentException("slots (" + slots + ") must be a multiple of gpus (" + gpus + ")");
    }
    for (int l = 0; l < phy2log.length; l++) {
      if (phy2log[l].length != slots) {
        throw new IllegalArgumentException("layer " + l + " has " + phy2log[l].length + " slots, expected " + slots);
      }
      boolean[] seen = new boolean[experts];
      for (int p = 0; p < slots; p++) {
        int e = phy2log[l][p];
        if (e < 0 || e >= experts) {
          throw new IllegalArgumentException("layer " + l + " slot " + p + " holds expert " + e + ", outside [0, " + experts + ")");
        }
        seen[e] = true;
      }
      for (int e = 0; e < experts; e++) {
        if (!seen[e]) throw new IllegalArgumentException("layer " + l + ": expert " + e + " has no slot");
      }
    }
  }

  public int layers() {
    return phy2log.length;
  }

  public int slots() {
    return phy2log[0].length;
  }

  public int slotsPerGpu() {
    return slots() / gpus;
  }

  public int gpuOfSlot(int slot) {
    return slot / slotsPerGpu();
  }

  /** Replica count per logical expert, {@code [layer][expert]}. */
  public int[][] logcnt() {
    int[][] cnt = new int[layers()][experts];
    for (int l = 0; l < layers(); l++) for (int e : phy2log[l]) cnt[l][e]++;
    return cnt;
  }

  /** Slots of each logical expert in ascending slot order, -1 padded: {@code [layer][expert][maxcnt]}. */
  public int[][][] log2phy() {
    int[][] cnt = logcnt();
    int max = 0;
    for (int[] c : cnt) for (int v : c) max = Math.max(max, v);
    int[][][] out = new int[layers()][experts][max];
    for (int l = 0; l < layers(); l++) {
      int[] fill = new int[experts];
      for (int[] row : out[l]) Arrays.fill(row, -1);
      for (int p = 0; p < slots(); p++) {
        int e = phy2log[l][p];
        out[l][e][fill[e]++] = p;
      }
    }
    return out;
  }

  /**
   * Layer {@code layer} as the data path's expert map on {@code topology}, whose world size must be
   * this placement's GPU count (a plan file does not say how its GPUs split into nodes; the
   * topology does).
   */
  public ExpertMap expertMap(int layer, Topology topology) {
    if (layer < 0 || layer >= layers()) {
      throw new IllegalArgumentException("layer " + layer + " is outside the placement's [0, " + layers() + ")");
    }
    if (topology.worldSize() != gpus) {
      throw new IllegalArgumentException("the topology has " + topology.worldSize() + " ranks (" + topology.nodes() + " nodes x "
          + topology.localRanks() + "), the placement " + gpus + " GPUs");
    }
    return ExpertMap.of(topology, experts, phy2log[layer]);
  }

  /** One expert map per layer, {@link #expertMap} of each. */
  public List<ExpertMap> expertMaps(Topology topology) {
    ExpertMap[] maps = new ExpertMap[layers()];
    for (int l = 0; l < maps.length; l++) maps[l] = expertMap(l, topology);
    return List.of(maps);
  }

  /** The placement whose layer l is {@code maps.get(l)}; the maps must agree on experts, ranks and slots. */
  public static Placement of(List<ExpertMap> maps) {
    if (maps.isEmpty()) throw new IllegalArgumentException("placement has no layers");
    ExpertMap first = maps.get(0);
    int[][] phy2log = new int[maps.size()][];
    for (int l = 0; l < phy2log.length; l++) {
      ExpertMap m = maps.get(l);
      if (m.experts() != first.experts() || m.ranks() != first.ranks() || m.slots() != first.slots()) {
        throw new IllegalArgumentException("layer " + l + " maps " + m.experts() + " experts to " + m.slots() + " slots on " + m.ranks()
            + " ranks, layer 0 " + first.experts() + " to " + first.slots() + " on " + first.ranks());
      }
      phy2log[l] = m.physicalToLogical();
    }
    return new Placement(first.experts(), first.ranks(), phy2log);
  }
}
