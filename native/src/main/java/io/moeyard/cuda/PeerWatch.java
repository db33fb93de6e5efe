package io.moeyard.cuda;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Between a rank's calls, watches its world for a peer's failure and then ends the device's waits
 * on peers ({@code onFailure}: the leg between machines abandoned, NCCL's communicator aborted).
 *
 * <p>Why: a call returns once its work is enqueued, so a rank whose peer on another machine failed
 * after the call's last host meeting there (its process killed, a CUDA error before its sends) has
 * a stream that waits in NCCL for a message that never comes, and so does the engine's stream
 * behind it: an engine that synchronizes its stream before its next call would wait for ever. The
 * calls' own host waits watch the transport already; this covers the time between calls.
 *
 * <p>The watch runs only while no call is in progress ({@link #enter} / {@link #exit} bracket the
 * calls), so it never aborts a communicator that a call is using; the failure itself reaches the
 * next call through the transport. Owns its thread; {@link #close} ends it.
 */
final class PeerWatch implements AutoCloseable {
  /** How often the world is checked between calls: a check may read the store (about a millisecond). */
  static final long PERIOD_NANOS = TimeUnit.MILLISECONDS.toNanos(50);

  private final ReentrantLock calls = new ReentrantLock();
  private final Runnable check;
  private final Runnable onFailure;
  private final long periodNanos;
  private final Thread thread;
  private volatile boolean closed;
  private volatile RuntimeException seen;

  /**
   * Starts watching: every {@code periodNanos} while no call is in progress, {@code check} (a
   * transport's {@code checkPeers}); the first failure it throws runs {@code onFailure} once and
   * ends the watch.
   */
  PeerWatch(String name, Runnable check, Runnable onFailure, long periodNanos) {
    this.check = check;
    this.onFailure = onFailure;
    this.periodNanos = periodNanos;
    this.thread = Thread.ofPlatform().daemon().name(name).unstarted(this::loop);
    thread.start();
  }

  /** A call begins: the watch holds off until {@link #exit}. Reentrant. */
  void enter() {
    calls.lock();
  }

  /** The call that {@link #enter} began has ended. */
  void exit() {
    calls.unlock();
  }

  /** The failure the watch saw (and acted on), or null. */
  RuntimeException seen() {
    return seen;
  }

  private void loop() {
    while (!closed) {
      LockSupport.parkNanos(this, periodNanos);
      if (closed || !calls.tryLock()) continue;
      try {
        if (closed) return;
        try {
          check.run();
        } catch (RuntimeException e) {
          seen = e;
          onFailure.run();
          return;
        }
      } catch (RuntimeException e) {
        // onFailure failed: the world is lost either way, and the next call says so
        seen.addSuppressed(e);
        return;
      } finally {
        calls.unlock();
      }
    }
  }

  /** Ends the watch and waits for its thread; a check in progress finishes first. */
  @Override
  public void close() {
    closed = true;
    LockSupport.unpark(thread);
    try {
      thread.join();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
