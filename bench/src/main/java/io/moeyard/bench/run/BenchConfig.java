package io.moeyard.bench.run;

import io.moeyard.engine.DType;

/**
 * One all-to-all benchmark configuration (tokens are per rank).
 *
 * @param chunk pipelining chunk in token-rank pairs (dispatch, fused combine) or rows (unfused a2a)
 */
public record BenchConfig(
    int ranks, int tokens, int hidden, int experts, int topk, DType dtype, String preset,
    int iters, int warmup, int chunk, long seed) {

  /** Null when the configuration is runnable, else the first problem, naming the value. */
  public String problem() {
    if (ranks < 1) return "--ranks must be >= 1, got " + ranks;
    if (tokens < 0) return "--tokens must be >= 0, got " + tokens;
    if (hidden < 1) return "--hidden must be >= 1, got " + hidden;
    if (experts < 1) return "--experts must be >= 1, got " + experts;
    if (experts % ranks != 0) return "--experts (" + experts + ") must be divisible by --ranks (" + ranks + ")";
    if (topk < 1 || topk > experts) return "--topk must be in [1, experts = " + experts + "], got " + topk;
    if (dtype == DType.FP8_E4M3 && hidden % DType.FP8_SCALE_BLOCK != 0) {
      return "--dtype fp8 needs --hidden divisible by 128, got " + hidden;
    }
    if (iters < 1) return "--iters must be >= 1, got " + iters;
    if (warmup < 0) return "--warmup must be >= 0, got " + warmup;
    if (chunk < 1) return "--chunk must be >= 1, got " + chunk;
    return null;
  }
}
