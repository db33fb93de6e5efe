package io.moeyard.comm;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * Where a communicator's async calls run: one virtual thread of its own, started on first use, so
 * that a collective waiting for its peers never blocks a ForkJoin worker, and calls run in the
 * order they were made. It counts the calls still pending, so that a synchronous call can refuse
 * to overtake them. Every backend's communicator holds one and closes it in its own close.
 */
public final class AsyncLane implements AutoCloseable {
  private final String threadName;
  private final String owner;
  private final AtomicInteger pending = new AtomicInteger();
  private ExecutorService executor;
  private boolean closed;

  /**
   * @param threadName the name of the lane's thread
   * @param owner who owns the lane, for the "closed" error (e.g. {@code "rank 3"})
   */
  public AsyncLane(String threadName, String owner) {
    this.threadName = threadName;
    this.owner = owner;
  }

  /** Runs {@code call} on the lane after the calls submitted before it. */
  public <T> CompletableFuture<T> submit(Supplier<T> call) {
    ExecutorService ex = executor();
    pending.incrementAndGet();
    return CompletableFuture.supplyAsync(() -> {
      try {
        return call.get();
      } finally {
        pending.decrementAndGet();
      }
    }, ex);
  }

  /** Calls submitted and not yet finished. */
  public int pending() {
    return pending.get();
  }

  private synchronized ExecutorService executor() {
    if (closed) throw new IllegalStateException(owner + ": the communicator is closed");
    if (executor == null) executor = Executors.newSingleThreadExecutor(Thread.ofVirtual().name(threadName).factory());
    return executor;
  }

  /** Refuses new calls and waits for the queued ones: peers are waiting for them. */
  @Override
  public void close() {
    ExecutorService ex;
    synchronized (this) {
      if (closed) return;
      closed = true;
      ex = executor;
    }
    if (ex != null) ex.close();
  }
}
