package io.moeyard.placement.cost;

/**
 * Dispatch traffic of a per-token trace under a placement.
 *
 * @param layers per layer
 * @param intraBytes bytes between different GPUs of one node, summed over layers
 * @param interBytes bytes between nodes, summed over layers
 * @param seconds estimated all-to-all time, summed over layers (they run one after another)
 * @param transitions token-level layer-to-layer expert pairs
 * @param crossGpu those whose two experts were served on different GPUs (replica choice included)
 * @param crossNode those served on different nodes
 */
public record DispatchCost(
    LayerDispatch[] layers, long intraBytes, long interBytes, double seconds, long transitions, long crossGpu, long crossNode) {

  /**
   * One layer.
   *
   * @param rows {@code [src][dst]} token rows sent (self included: dedup'd rows a GPU keeps)
   * @param intraBytes bytes crossing NVLink
   * @param interBytes bytes crossing the network
   * @param seconds slowest GPU's time: its busier direction per link type, the two link types
   *     overlapping
   */
  public record LayerDispatch(long[][] rows, long intraBytes, long interBytes, double seconds) {}

  public long bytes() {
    return intraBytes + interBytes;
  }
}
