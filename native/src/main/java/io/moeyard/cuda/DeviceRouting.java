package io.moeyard.cuda;

import java.lang.foreign.MemorySegment;

/**
 * A gate's output in device memory: {@code tokens x topk} int32 logical expert ids ({@code -1} = not
 * routed) at {@code idxAddress} and as many f32 weights at {@code weightsAddress}, row-major. The
 * ids are checked on the device during the layout (outside [-1, E), repeated in a row, a routed
 * weight that is not finite) and a bad one fails every rank, naming it, before any row moves. A
 * dispatch copies the routing into the communicator's own memory, so the engine may reuse these
 * buffers once the dispatch is enqueued. Raw addresses for the reason given in {@link DeviceRows}.
 */
public record DeviceRouting(long idxAddress, long weightsAddress, int tokens, int topk) {

  public DeviceRouting {
    if (tokens < 0) throw new IllegalArgumentException("device routing: tokens must be >= 0, got " + tokens);
    if (topk <= 0) throw new IllegalArgumentException("device routing: topk must be > 0, got " + topk);
    if (idxAddress == 0) throw new IllegalArgumentException("device routing: topkIdx address is 0 (null)");
    if (weightsAddress == 0) throw new IllegalArgumentException("device routing: topkWeights address is 0 (null)");
  }

  /** From zero-length native segments of the device addresses; heap segments are refused. */
  public static DeviceRouting of(MemorySegment topkIdx, MemorySegment topkWeights, int tokens, int topk) {
    return new DeviceRouting(DeviceRows.addressOf(topkIdx, "topkIdx"), DeviceRows.addressOf(topkWeights, "topkWeights"),
        tokens, topk);
  }

  /** Bytes of the ids (and of the weights). */
  public long bytes() {
    return (long) tokens * topk * 4L;
  }
}
