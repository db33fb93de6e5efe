package io.moeyard.engine.shm;

import java.lang.foreign.Arena;

/**
 * A {@link ControlBlock} and the arena that maps it, with one owner: {@link #close} unmaps it. A
 * transport's collectives use {@link #block} under the transport's own lock, which its close also
 * holds; the calls any thread may make (an abort, a look at the abort word, a check of the peers)
 * come through here instead, so that one racing the close never reaches unmapped memory (a closed
 * arena's IllegalStateException).
 */
final class BlockMapping implements AutoCloseable {
  final ControlBlock block;
  private final Arena arena;
  /** Guarded by this. */
  private boolean unmapped;
  /** Whether the block was aborted when close unmapped it. Guarded by this. */
  private boolean abortedWhenClosed;

  BlockMapping(ControlBlock block, Arena arena) {
    this.block = block;
    this.arena = arena;
  }

  /** {@link ControlBlock#abort(String)} while mapped; nothing once closed. */
  synchronized void abort(String why) {
    if (!unmapped) block.abort(why);
  }

  /** Whether a rank aborted the world or was found dead (after close: as the block said then). */
  synchronized boolean aborted() {
    return unmapped ? abortedWhenClosed : block.aborted();
  }

  /** Runs {@code check} (it may throw) with the block mapped, holding off the close; false, and nothing run, once closed. */
  synchronized boolean whileMapped(Runnable check) {
    if (unmapped) return false;
    check.run();
    return true;
  }

  @Override
  public synchronized void close() {
    if (unmapped) return;
    abortedWhenClosed = block.aborted();
    unmapped = true;
    arena.close();
  }
}
