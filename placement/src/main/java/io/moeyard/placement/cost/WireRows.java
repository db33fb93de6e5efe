package io.moeyard.placement.cost;

import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.Topology;
import io.moeyard.placement.model.Placement;
import io.moeyard.placement.trace.RoutingTrace;
import java.util.Arrays;

/**
 * The rows one layer's dispatch writes on the data path when the ranks run a trace on an expert
 * map: what {@code moeyard bench --placement} reports as its {@code rows} block. Counted the way
 * the dispatch layout counts them: every selection (token, expert) is resolved to a slot by
 * {@link ExpertMap#chooseSlot} and writes one row into its rank's expert-major receive buffer, so
 * a token with two experts on one rank lands there twice (one row per local slot). Rank r runs the
 * trace's tokens {@code [r * T, (r + 1) * T)} ({@link TokenSplit#perRank}), as the bench does.
 *
 * @param received rows each rank receives, its own included, {@code [ranks]}
 * @param remote rows whose destination rank is not their source rank
 * @param remoteNode rows whose destination rank is on another node than their source
 */
public record WireRows(long[] received, long remote, long remoteNode) {
  public WireRows {
    received = received.clone();
  }

  @Override
  public long[] received() {
    return received.clone();
  }

  /** Rows the busiest rank receives: what sizes receive buffers and bounds the layer's time. */
  public long receivedMax() {
    return Arrays.stream(received).max().orElse(0);
  }

  public double receivedMean() {
    return Arrays.stream(received).average().orElse(0);
  }

  /**
   * Layer {@code layer} of {@code trace} on {@code map}, {@code tokensPerRank} tokens on each of
   * its ranks; IllegalArgumentException naming the value when the trace does not fit.
   */
  public static WireRows count(RoutingTrace trace, int layer, ExpertMap map, int tokensPerRank) {
    if (layer < 0 || layer >= trace.layers()) {
      throw new IllegalArgumentException("layer " + layer + " is outside " + trace.name() + "'s [0, " + trace.layers() + ")");
    }
    if (trace.experts() != map.experts()) {
      throw new IllegalArgumentException(trace.name() + " routes to " + trace.experts() + " experts, the expert map has " + map.experts());
    }
    int ranks = map.ranks();
    if (tokensPerRank < 0 || (long) tokensPerRank * ranks > trace.tokens()) {
      throw new IllegalArgumentException(ranks + " ranks x " + tokensPerRank + " tokens do not fit " + trace.name() + "'s "
          + trace.tokens() + " tokens");
    }
    TokenSplit split = TokenSplit.perRank(tokensPerRank, ranks);
    Topology topology = map.topology();
    long[] received = new long[ranks];
    long remote = 0, remoteNode = 0;
    for (int r = 0; r < ranks; r++) {
      int first = split.start(r);
      for (int t = 0; t < tokensPerRank; t++) {
        for (int k = 0; k < trace.topk(); k++) {
          int e = trace.expert(first + t, layer, k);
          if (e < 0) continue;
          int d = map.rankOfSlot(map.chooseSlot(r, t, e));
          received[d]++;
          if (d != r) remote++;
          if (topology.nodeOf(d) != topology.nodeOf(r)) remoteNode++;
        }
      }
    }
    return new WireRows(received, remote, remoteNode);
  }

  /**
   * The same for a plan's layer on {@code topology} ({@link Placement#expertMap}); the plan must
   * have the trace's layers.
   */
  public static WireRows count(RoutingTrace trace, int layer, Placement placement, Topology topology, int tokensPerRank) {
    if (placement.layers() != trace.layers()) {
      throw new IllegalArgumentException("the placement has " + placement.layers() + " layers, " + trace.name() + " " + trace.layers());
    }
    return count(trace, layer, placement.expertMap(layer, topology), tokensPerRank);
  }
}
