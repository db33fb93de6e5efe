package io.moeyard.placement.cost;

/**
 * What the cost of moving a token row depends on.
 *
 * @param nodes nodes; GPU g lives on node g / (gpus / nodes)
 * @param hidden hidden size (elements per token row)
 * @param bytesPerElement 2 for BF16, the dispatch dtype engines default to
 * @param nvlinkGBps achievable intra-node bandwidth per GPU and direction, GB/s (10^9 bytes/s)
 * @param netGBps achievable inter-node bandwidth per GPU and direction, GB/s
 */
public record Network(int nodes, int hidden, int bytesPerElement, double nvlinkGBps, double netGBps) {
  /**
   * Defaults from DeepEP's published H800 figures, the bandwidth a tuned all-to-all actually gets
   * rather than the link's label: about 150 GB/s over NVLink, about 45 GB/s over RDMA.
   */
  public static final double DEFAULT_NVLINK_GBPS = 150;

  public static final double DEFAULT_NET_GBPS = 45;
  public static final int DEFAULT_HIDDEN = 7168;

  public Network {
    if (nodes <= 0 || hidden <= 0 || bytesPerElement <= 0) {
      throw new IllegalArgumentException("nodes, hidden and bytesPerElement must be positive");
    }
    if (!(nvlinkGBps > 0) || !(netGBps > 0)) {
      throw new IllegalArgumentException("bandwidths must be positive, got nvlink=" + nvlinkGBps + " net=" + netGBps);
    }
  }

  public long rowBytes() {
    return (long) hidden * bytesPerElement;
  }
}
