package io.moeyard.cuda;

import java.util.Arrays;

/**
 * The device clock of a timed collective: a start event on the clock rank's stream that every
 * other rank's stream waits for (through the clock rank's gate event, recorded right after it: a
 * timing event cannot be shared between processes), an end event on the clock rank's stream after
 * every rank's done event. The clock rank's stream is held busy before the start event so that it
 * fires after the ranks have enqueued the call's kernels: their launch latency (and the ranks'
 * meeting on the host) stays out of the time. The clock rank's thread records the events; the
 * others wait for the gate after a barrier, so that they wait for this call's record. The clock
 * rank is rank 0 in a world of one machine ({@link VirtualRanks#clockRank}); across machines each
 * machine's first rank times its machine (its ranks' stage and done events; what crosses machines
 * is waited for on the streams), and only that rank's process reads it.
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

  /** The clock rank: the start event on its stream, after every event of {@code after} and the hold. */
  void start(long[] after) {
    int c = ranks.clockRank();
    long st = ranks.streams[c];
    VirtualRanks.waitAll(st, after);
    NativeKernels.hold(HOLD_NS, st);
    NativeKernels.eventRecord(evStart, st);
    NativeKernels.eventRecord(ranks.evGate[c], st);
  }

  /** The event the other ranks' streams wait for (after the barrier that follows {@link #start}). */
  long startEvent() {
    return ranks.evGate[ranks.clockRank()];
  }

  /** The clock rank, after a barrier that follows every rank's done event: the end event. */
  void stop() {
    // The whole call is enqueued now; had the start event already fired, the hold was shorter
    // than the enqueue and the clock counted part of the launch latency.
    if (NativeKernels.eventQuery(evStart)) {
      shortHolds++;
    }
    long st = ranks.streams[ranks.clockRank()];
    VirtualRanks.waitAll(st, ranks.evDone);
    NativeKernels.eventRecord(evEnd, st);
  }

  /** Milliseconds from the start event to the end event of the last timed call; waits for its end. */
  float elapsedMs() {
    NativeKernels.eventSynchronize(evEnd);
    return NativeKernels.eventElapsedMs(evStart, evEnd);
  }

  /** Timed calls whose start event had fired before their enqueue ended. */
  int shortHolds() {
    return shortHolds;
  }

  /** Device-to-device copy of {@code bytes} on this process's first stream, median of {@code iters} timed runs (ms). */
  float copyMillis(long bytes, int iters) {
    long stream = ranks.streams[Math.max(0, ranks.me)];
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
