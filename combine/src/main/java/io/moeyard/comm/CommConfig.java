package io.moeyard.comm;

import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.engine.DType;
import java.util.Objects;

/**
 * The sizes a {@link Communicator} is built for, fixed for its lifetime: everything it needs is
 * allocated once from these, so a steady-state call allocates no rows.
 *
 * @param maxTokens most tokens one rank dispatches in one call
 * @param hidden row width of the dispatched tokens and of the expert outputs
 * @param topk experts per token in the routing
 * @param dispatchType dtype of the dispatched rows (FP8-E4M3 rows carry their scales)
 * @param combineType dtype of the expert outputs and of the combined rows (bf16, fp16 or fp32)
 * @param receiveRows rows this rank's receive buffer holds; {@code 0} means the worst case,
 *     {@link Communicator#worstCaseReceiveRows}. A dispatch that would deliver more fails on every
 *     rank, naming the need; engines that know their routing's skew size it smaller.
 * @param chunkPairs pipelining granularity of the CPU backend ({@link DispatchOptions})
 * @param variant {@link Variant#FUSED} (the product) or {@link Variant#UNFUSED} (the baseline it is
 *     measured against)
 * @param nodePath how the fused path (cpu and cuda backends) crosses nodes when the topology has
 *     more than one: {@link NodePath#RELAY} (the default) or {@link NodePath#DIRECT}; on one node
 *     both are the same path, and the unfused baseline always sends direct
 */
public record CommConfig(
    int maxTokens, int hidden, int topk, DType dispatchType, DType combineType, int receiveRows, int chunkPairs,
    Variant variant, NodePath nodePath) {

  /** Which implementation moves the rows; both give the same bits. */
  public enum Variant {
    /** One pass, straight into place (FUSCO-style). */
    FUSED,
    /** Megatron's permute / all-to-all-v / sort chunks, and back: the baseline. */
    UNFUSED
  }

  /** How rows cross nodes on the fused path; both give the same windows and the same bits. */
  public enum NodePath {
    /**
     * Each token crosses to each remote node once, to the rank with the sender's local index
     * there, which stores it into its node's windows; combine sums per node on the way back.
     */
    RELAY,
    /** Each token crosses to every rank that needs it, wherever it is (one hop). */
    DIRECT
  }

  public CommConfig {
    Objects.requireNonNull(dispatchType, "dispatchType");
    Objects.requireNonNull(nodePath, "nodePath");
    Objects.requireNonNull(combineType, "combineType");
    Objects.requireNonNull(variant, "variant");
    if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
    if (hidden <= 0) throw new IllegalArgumentException("hidden must be > 0, got " + hidden);
    if (topk <= 0) throw new IllegalArgumentException("topk must be > 0, got " + topk);
    if (!combineType.combinable()) {
      throw new IllegalArgumentException("combineType " + combineType.cliName() + " is not bf16, fp16 or fp32");
    }
    if (dispatchType.hasScales() && hidden % DType.FP8_SCALE_BLOCK != 0) {
      throw new IllegalArgumentException("fp8 dispatch needs hidden divisible by " + DType.FP8_SCALE_BLOCK + ", got " + hidden);
    }
    if (receiveRows < 0) throw new IllegalArgumentException("receiveRows must be >= 0 (0 = worst case), got " + receiveRows);
    if (chunkPairs <= 0) throw new IllegalArgumentException("chunkPairs must be > 0, got " + chunkPairs);
  }

  /** Fused, worst-case receive buffer, default chunking. */
  public static CommConfig of(int maxTokens, int hidden, int topk, DType dispatchType, DType combineType) {
    return new CommConfig(maxTokens, hidden, topk, dispatchType, combineType, 0, DispatchOptions.DEFAULT_CHUNK_PAIRS,
        Variant.FUSED, NodePath.RELAY);
  }

  public CommConfig withReceiveRows(int rows) {
    return new CommConfig(maxTokens, hidden, topk, dispatchType, combineType, rows, chunkPairs, variant, nodePath);
  }

  public CommConfig withChunkPairs(int pairs) {
    return new CommConfig(maxTokens, hidden, topk, dispatchType, combineType, receiveRows, pairs, variant, nodePath);
  }

  public CommConfig withNodePath(NodePath p) {
    return new CommConfig(maxTokens, hidden, topk, dispatchType, combineType, receiveRows, chunkPairs, variant, p);
  }

  /** True when a communicator of this config on {@code topology} takes the node-level path. */
  public boolean relaysOn(io.moeyard.engine.Topology topology) {
    return variant == Variant.FUSED && nodePath == NodePath.RELAY && topology.nodes() > 1;
  }

  public CommConfig withVariant(Variant v) {
    return new CommConfig(maxTokens, hidden, topk, dispatchType, combineType, receiveRows, chunkPairs, v, nodePath);
  }
}
