package io.moeyard.cuda;

/**
 * An engine's CUDA stream ({@code cudaStream_t} as a raw handle; {@code 0} is the legacy default
 * stream). A device-path call orders itself after the work already on it (an event recorded on it
 * that the rank's own stream waits for) and puts its completion on it (the stream waits for the
 * call's done event), so the engine's next kernel on this stream sees the call's results: stream
 * order in, stream order out, and the calling thread does not wait except for the dispatch's one
 * count read-back.
 */
public record CudaStream(long handle) {
  /** The legacy default stream. */
  public static final CudaStream DEFAULT = new CudaStream(0L);
}
