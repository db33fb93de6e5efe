package io.moeyard.cuda;

import java.util.Arrays;

/**
 * The device clock of a call: a start event on stream 0 that every rank's stream waits for, an end
 * event after every rank's done event. Stream 0 is held busy before the start event so that it
 * fires after the host has enqueued the call's kernels: their launch latency stays out of the time.
 */
final class Clock {
  /** How long stream 0 is held busy before a timed call's start event. */
  static final long HOLD_NS = 2_000_000L;

  private final VirtualRanks ranks;
  private long evStart;
  private long evEnd;
  private int shortHolds;

  Clock(VirtualRanks ranks) {
    this.ranks = ranks;
    try {
      evStart = NativeKernels.eventCreate(true);
      evEnd = NativeKernels.eventCreate(true);
    } catch (RuntimeException e) {
      RuntimeException err = close(null);
      if (err != null) {
        e.addSuppressed(err);
      }
      throw e;
    }
  }

  /** All streams start after the start event, recorded on stream 0 once it has waited for {@code after}. */
  void start(long[] after) {
    long[] streams = ranks.streams;
    if (after != null) {
      for (long e : after) {
        NativeKernels.streamWaitEvent(streams[0], e);
      }
    }
    NativeKernels.hold(HOLD_NS, streams[0]);
    NativeKernels.eventRecord(evStart, streams[0]);
    for (int r = 1; r < ranks.nR; r++) {
      NativeKernels.streamWaitEvent(streams[r], evStart);
    }
  }

  /** The end event on stream 0 after every rank's done event. */
  void stop() {
    // The whole call is enqueued now; had the start event already fired, the hold was shorter
    // than the enqueue and the clock counted part of the launch latency.
    if (NativeKernels.eventQuery(evStart)) {
      shortHolds++;
    }
    for (int r = 0; r < ranks.nR; r++) {
      NativeKernels.streamWaitEvent(ranks.streams[0], ranks.evDone[r]);
    }
    NativeKernels.eventRecord(evEnd, ranks.streams[0]);
  }

  void awaitEnd() {
    NativeKernels.eventSynchronize(evEnd);
  }

  /** Milliseconds from the start event to the end event of the last call (after {@link #awaitEnd}). */
  float elapsedMs() {
    return NativeKernels.eventElapsedMs(evStart, evEnd);
  }

  /** Timed calls whose start event had fired before their enqueue ended. */
  int shortHolds() {
    return shortHolds;
  }

  /** Device-to-device copy of {@code bytes} on stream 0, median of {@code iters} timed runs (ms). */
  float copyMillis(long bytes, int iters) {
    long stream = ranks.streams[0];
    long a = NativeKernels.malloc(bytes);
    long b = 0;
    try {
      b = NativeKernels.malloc(bytes);
      NativeKernels.memsetAsync(a, 1, bytes, stream);
      float[] ms = new float[Math.max(1, iters)];
      for (int i = -1; i < ms.length; i++) { // one warm-up
        NativeKernels.hold(HOLD_NS, stream);
        NativeKernels.eventRecord(evStart, stream);
        NativeKernels.copyDeviceToDeviceAsync(b, a, bytes, stream);
        NativeKernels.eventRecord(evEnd, stream);
        NativeKernels.eventSynchronize(evEnd);
        if (i >= 0) {
          ms[i] = NativeKernels.eventElapsedMs(evStart, evEnd);
        }
      }
      Arrays.sort(ms);
      return ms[ms.length / 2];
    } finally {
      NativeKernels.free(a);
      NativeKernels.free(b);
    }
  }

  RuntimeException close(RuntimeException err) {
    long s = evStart;
    long e = evEnd;
    if (s != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(s));
    if (e != 0) err = Release.attempt(err, () -> NativeKernels.eventDestroy(e));
    return err;
  }
}
