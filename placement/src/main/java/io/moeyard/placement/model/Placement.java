package io.moeyard.placement.model;

import java.util.Arrays;

/**
 * Where every physical slot's expert lives, per layer: {@code phy2log[layer][slot]} = logical
 * expert. Slots are GPU-major (slot p on GPU p / slotsPerGpu), as SGLang and EPLB number them.
 * Every logical expert has at least one slot.
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
}
