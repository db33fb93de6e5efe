package io.moeyard.bench.run;

/**
 * Figures of one bench run. Bytes are DeepEP's "bytes received per rank": one row per token-rank
 * pair (self included), averaged over ranks; GB/s = those bytes / median time, so a path that
 * moves more (the unfused one: every selection, three copies) shows as slower, not as busier.
 */
/*
 * dispatchWrittenBytesPerRank: what the fused dispatch really writes on a rank, one row (and its
 * FP8 scales) per received row, i.e. per selection rather than per token-rank pair, averaged over
 * ranks. The copy roofline writes the counted bytes once, so a fused dispatch at the copy's speed
 * moves written/counted times the bytes per second that "of copy" shows.
 */
public record BenchResult(
    BenchConfig config,
    String backend,
    String device,
    double dispatchBytesPerRank,
    double combineBytesPerRank,
    double dispatchWrittenBytesPerRank,
    Timing dispatchFused,
    Timing dispatchUnfused,
    Timing combineFused,
    Timing combineUnfused,
    double copyMedianUs,
    double copyGbps,
    boolean verified,
    String verifyNote,
    SimpleKernels simpleKernels,
    Rows rows) {

  /**
   * Where the dispatched rows went, as the data path delivered them: rows (one per selection)
   * received per rank, max and mean over ranks; rows whose source is another rank; rows that
   * crossed a node boundary on the fused dispatch's node path (relay: one per token and remote
   * node; direct: one per token-rank pair with a rank on another node).
   */
  public record Rows(long receivedMax, double receivedMean, long remote, long remoteNode) {
    /** From per-rank counts. */
    public static Rows of(long[] received, long[] remote, long[] remoteNode) {
      long max = 0;
      double sum = 0;
      long rem = 0;
      long node = 0;
      for (int r = 0; r < received.length; r++) {
        max = Math.max(max, received[r]);
        sum += received[r];
        rem += remote[r];
        node += remoteNode[r];
      }
      return new Rows(max, received.length == 0 ? 0 : sum / received.length, rem, node);
    }
  }

  /**
   * cuda only (else null): the fused calls timed in the same run with the untuned kernels
   * (native simple.cu), same bits, to show what the tuning buys.
   */
  public record SimpleKernels(double dispatchMedianUs, double combineMedianUs, boolean verified) {}

  /** This result with the untuned kernels' figures. */
  public BenchResult withSimpleKernels(SimpleKernels s) {
    return new BenchResult(config, backend, device, dispatchBytesPerRank, combineBytesPerRank,
        dispatchWrittenBytesPerRank, dispatchFused, dispatchUnfused, combineFused, combineUnfused,
        copyMedianUs, copyGbps, verified && (s == null || s.verified()), verifyNote, s, rows);
  }

  /** Median time of one call across all ranks, and the bandwidth it implies. */
  public record Timing(double medianUs, double gbps) {}
}
