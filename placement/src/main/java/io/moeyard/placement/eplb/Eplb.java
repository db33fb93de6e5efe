package io.moeyard.placement.eplb;

import io.moeyard.placement.model.Placement;

/**
 * DeepSeek's Expert Parallelism Load Balancer, reproduced so that it returns the same slots as
 * {@code eplb.rebalance_experts} for the same weights (see the package documentation for the
 * details that make that true, float32 arithmetic, first-index argmax and argmin, and for how
 * equal weights are ordered).
 */
public final class Eplb {
  private Eplb() {}

  /**
   * EPLB's full answer: {@code phy2log[L][P]}, the replica rank of every slot {@code phyrank[L][P]}
   * (0 for an expert's first replica) and {@code logcnt[L][E]}.
   */
  public record Result(int experts, int gpus, int[][] phy2log, int[][] phyrank, int[][] logcnt) {
    public Placement placement() {
      return new Placement(experts, gpus, phy2log);
    }

    /**
     * {@code log2phy[L][E][maxcnt]} exactly as EPLB fills it: column r holds the slot of replica
     * rank r, which is not always ascending slot order; -1 padded.
     */
    public int[][][] log2phy() {
      int max = 0;
      for (int[] c : logcnt) for (int v : c) max = Math.max(max, v);
      int[][][] out = new int[phy2log.length][experts][max];
      for (int l = 0; l < phy2log.length; l++) {
        for (int[] row : out[l]) java.util.Arrays.fill(row, -1);
        for (int p = 0; p < phy2log[l].length; p++) out[l][phy2log[l][p]][phyrank[l][p]] = p;
      }
      return out;
    }
  }

  /** {@link #rebalanceDetailed} reduced to the placement. */
  public static Placement rebalance(double[][] weight, int numReplicas, int numGroups, int numNodes, int numGpus) {
    return rebalanceDetailed(weight, numReplicas, numGroups, numNodes, numGpus).placement();
  }

  /**
   * EPLB's entry point.
   *
   * @param weight {@code [layers][experts]} load per logical expert (token counts)
   * @param numReplicas total physical slots per layer P (experts + redundant), a multiple of numGpus
   * @param numGroups expert groups; hierarchical policy iff {@code numGroups % numNodes == 0}
   * @param numNodes nodes
   * @param numGpus GPUs, a multiple of numNodes
   */
  public static Result rebalanceDetailed(
      double[][] weight, int numReplicas, int numGroups, int numNodes, int numGpus) {
    if (weight.length == 0) throw new IllegalArgumentException("weight has no layers");
    int experts = weight[0].length;
    if (experts == 0) throw new IllegalArgumentException("weight has no experts");
    for (double[] row : weight) {
      if (row.length != experts) throw new IllegalArgumentException("weight rows disagree: " + row.length + " vs " + experts);
    }
    if (numGpus <= 0 || numNodes <= 0 || numGpus % numNodes != 0) {
      throw new IllegalArgumentException("gpus (" + numGpus + ") must be a positive multiple of nodes (" + numNodes + ")");
    }
    if (numReplicas % numGpus != 0) {
      throw new IllegalArgumentException("replicas (" + numReplicas + ") must be a multiple of gpus (" + numGpus + ")");
    }
    if (numReplicas < experts) {
      throw new IllegalArgumentException("replicas (" + numReplicas + ") must be at least experts (" + experts + ")");
    }
    if (numGroups <= 0) throw new IllegalArgumentException("groups must be positive, got " + numGroups);
    if (numGroups % numNodes == 0) {
      if (experts % numGroups != 0) {
        throw new IllegalArgumentException("experts (" + experts + ") must be a multiple of groups (" + numGroups + ")");
      }
      return hierarchical(weight, numReplicas, numGroups, numNodes, numGpus);
    }
    return hierarchical(weight, numReplicas, 1, 1, numGpus);
  }

  private static Result hierarchical(double[][] weightIn, int numPhy, int numGroups, int numNodes, int numGpus) {
    int layers = weightIn.length;
    int numLog = weightIn[0].length;
    int groupSize = numLog / numGroups;
    int groupsPerNode = numGroups / numNodes;
    int phyPerGpu = numPhy / numGpus;
    int logPerNode = numLog / numNodes;
    int phyPerNode = numPhy / numNodes;
    int gpusPerNode = numGpus / numNodes;

    int[][] outPhy2log = new int[layers][numPhy];
    int[][] outRank = new int[layers][numPhy];
    int[][] outCnt = new int[layers][numLog];
    for (int l = 0; l < layers; l++) {
      // EPLB casts to float32 before anything else; ties and sums must round the same way.
      float[] w = new float[numLog];
      for (int e = 0; e < numLog; e++) w[e] = (float) weightIn[l][e];

      // Step 1: groups to nodes.
      float[] perGroup = new float[numGroups];
      for (int g = 0; g < numGroups; g++) {
        float s = 0f;
        for (int k = 0; k < groupSize; k++) s += w[g * groupSize + k];
        perGroup[g] = s;
      }
      int[][] gp = balancedPacking(perGroup, numNodes);
      int[] log2mlog = new int[numLog];
      for (int g = 0; g < numGroups; g++) {
        for (int k = 0; k < groupSize; k++) {
          log2mlog[g * groupSize + k] = (gp[0][g] * groupsPerNode + gp[1][g]) * groupSize + k;
        }
      }
      int[] mlog2log = inverse(log2mlog);

      for (int n = 0; n < numNodes; n++) {
        // Step 2: replicas within the node.
        float[] perMlog = new float[logPerNode];
        for (int j = 0; j < logPerNode; j++) perMlog[j] = w[mlog2log[n * logPerNode + j]];
        int[][] rep = replicateExperts(perMlog, phyPerNode);
        int[] phy2mlog = rep[0];
        int[] phyrank = rep[1];
        int[] mlogcnt = rep[2];

        // Step 3: replicas to the node's GPUs.
        float[] perPhy = new float[phyPerNode];
        for (int j = 0; j < phyPerNode; j++) perPhy[j] = perMlog[phy2mlog[j]] / mlogcnt[phy2mlog[j]];
        int[][] pk = balancedPacking(perPhy, gpusPerNode);
        int[] phy2pphy = new int[phyPerNode];
        for (int j = 0; j < phyPerNode; j++) phy2pphy[j] = pk[0][j] * phyPerGpu + pk[1][j];
        int[] pphy2phy = inverse(phy2pphy);
        for (int q = 0; q < phyPerNode; q++) {
          int mlog = phy2mlog[pphy2phy[q]] + n * logPerNode;
          outPhy2log[l][n * phyPerNode + q] = mlog2log[mlog];
          outRank[l][n * phyPerNode + q] = phyrank[pphy2phy[q]];
        }
        for (int j = 0; j < logPerNode; j++) outCnt[l][mlog2log[n * logPerNode + j]] = mlogcnt[j];
      }
    }
    return new Result(numLog, numGpus, outPhy2log, outRank, outCnt);
  }

  /**
   * EPLB's balanced_packing for one row: returns {@code {packIndex[n], rankInPack[n]}}. Items go
   * heaviest first (equal weights by index, see the package documentation) into the lightest pack
   * that still has room, the first such pack on ties (Python's {@code min} keeps the first minimum).
   */
  static int[][] balancedPacking(float[] weight, int numPacks) {
    int n = weight.length;
    if (n % numPacks != 0) throw new IllegalArgumentException(n + " items do not split evenly into " + numPacks + " packs");
    int perPack = n / numPacks;
    int[] packIndex = new int[n];
    int[] rankInPack = new int[n];
    if (perPack == 1) {
      for (int i = 0; i < n; i++) packIndex[i] = i;
      return new int[][] {packIndex, rankInPack};
    }
    int[] order = sortDescendingStable(weight);
    float[] packWeight = new float[numPacks];
    int[] packItems = new int[numPacks];
    for (int item : order) {
      int best = -1;
      for (int p = 0; p < numPacks; p++) {
        if (packItems[p] < perPack && (best < 0 || packWeight[p] < packWeight[best])) best = p;
      }
      packIndex[item] = best;
      rankInPack[item] = packItems[best];
      packWeight[best] += weight[item];
      packItems[best]++;
    }
    return new int[][] {packIndex, rankInPack};
  }

  /**
   * EPLB's replicate_experts for one row: returns {@code {phy2log[numPhy], rank[numPhy],
   * logcnt[numLog]}}. Each extra slot goes to the expert with the highest load per replica, the
   * lowest id on ties (torch's max returns the first maximum).
   */
  static int[][] replicateExperts(float[] weight, int numPhy) {
    int numLog = weight.length;
    int[] phy2log = new int[numPhy];
    int[] rank = new int[numPhy];
    int[] logcnt = new int[numLog];
    for (int e = 0; e < numLog; e++) {
      phy2log[e] = e;
      logcnt[e] = 1;
    }
    for (int i = numLog; i < numPhy; i++) {
      int best = 0;
      float bestV = weight[0] / logcnt[0];
      for (int e = 1; e < numLog; e++) {
        float v = weight[e] / logcnt[e];
        if (v > bestV) {
          best = e;
          bestV = v;
        }
      }
      phy2log[i] = best;
      rank[i] = logcnt[best];
      logcnt[best]++;
    }
    return new int[][] {phy2log, rank, logcnt};
  }

  private static int[] sortDescendingStable(float[] w) {
    Integer[] idx = new Integer[w.length];
    for (int i = 0; i < idx.length; i++) idx[i] = i;
    // Arrays.sort on objects is stable, so equal weights keep index order; larger values first.
    java.util.Arrays.sort(idx, (a, b) -> Float.compare(w[b], w[a]));
    int[] out = new int[w.length];
    for (int i = 0; i < out.length; i++) out[i] = idx[i];
    return out;
  }

  private static int[] inverse(int[] perm) {
    int[] inv = new int[perm.length];
    for (int i = 0; i < perm.length; i++) inv[perm[i]] = i;
    return inv;
  }
}
