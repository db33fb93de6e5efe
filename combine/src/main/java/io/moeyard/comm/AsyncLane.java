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
  /** The lane's one thread, once started. */
  private volatile Thread thread;
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

  /**
   * Waits until the calls submitted so far have finished (failed or not). A synchronous call that
   * refuses to overtake them waits here before it announces the refusal: the lane's calls are in
   * (or queued for) collectives of their own, which the refusal's collective must not meet.
   */
  public void awaitIdle() {
    // on the lane itself (a continuation it completed): the calls queued behind this one cannot
    // be in a collective, and waiting for them would wait for this thread
    if (Thread.currentThread() == thread) return;
    ExecutorService ex;
    synchronized (this) {
      ex = executor;
      if (ex == null || closed) return; // nothing submitted, or close waited for everything
    }
    try {
      CompletableFuture.runAsync(() -> {}, ex).join(); // the lane runs calls in order: the earlier ones are done
    } catch (java.util.concurrent.RejectedExecutionException | java.util.concurrent.CompletionException e) {
      // closed meanwhile: close waits for the queued calls itself
    }
  }

  private synchronized ExecutorService executor() {
    if (closed) throw new IllegalStateException(owner + ": the communicator is closed");
    if (executor == null) {
      java.util.concurrent.ThreadFactory virtual = Thread.ofVirtual().name(threadName).factory();
      executor = Executors.newSingleThreadExecutor(r -> thread = virtual.newThread(r));
    }
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
