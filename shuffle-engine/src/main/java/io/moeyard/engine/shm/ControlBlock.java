package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.transport.Backoff;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The small-message exchange of a process world, in one shared-memory file every rank maps: per
 * rank a line (sequence number, pid, whether it left) and two message slots, used by alternate
 * rounds; one abort word and message for the world.
 *
 * <p>A round: a rank writes its message into its slot of the round's parity, then publishes the
 * round number in its sequence word (release); it waits until every rank's sequence word reached
 * the round (acquire) and reads their slots. A rank can only start round g + 1, writing the other
 * slot, once everybody published g, and round g + 2 (this slot again) once everybody published
 * g + 1, which they do only after reading round g: no slot is overwritten while it is read.
 *
 * <p>Waiting spins ({@link Thread#onSpinWait}), then yields, then sleeps on a futex of the block
 * ({@link Futex}) that every publish bumps, so the last rank to arrive wakes the others at once:
 * a collective's rounds are microseconds apart when ranks are balanced, while more ranks than
 * cores must neither starve the ones still working nor oversleep their arrival. While it waits it
 * checks the abort word, and every {@link #LIVENESS_NANOS} whether the missing ranks' processes
 * are still alive, so that a rank killed with -9 fails the others in milliseconds rather than at
 * the timeout; the timeout names whoever never arrived. {@link #checkPeers()} makes the same
 * check of every peer between collectives.
 */
final class ControlBlock {
  static final long MAGIC = 0x6d6f6579617264L; // "moeyard"
  private static final long HEADER = 4096;
  private static final long LINE = 64;
  private static final int ABORT_MESSAGE_BYTES = 2000;
  private static final long ABORT_WORD = 16;
  private static final long ABORT_LEN = 24;
  private static final long ABORT_TEXT = 28;
  /** A 32-bit word every publish and abort bumps, that sleeping waiters wait on ({@link Futex}). */
  private static final long EPOCH = 2048;
  /** How many processes sleep on {@link #EPOCH}: a publisher makes the wake system call only then. */
  private static final long SLEEPERS = 2052;
  private static final int SPINS = 2_000;
  private static final int YIELDS = 100;
  private static final long MIN_PARK_NANOS = 2_000;
  private static final long MAX_PARK_NANOS = 200_000;
  private static final long LIVENESS_NANOS = 20_000_000;
  private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
  private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

  private final MemorySegment seg;
  private final int rank;
  private final int ranks;
  private final int slotBytes;
  private final long timeoutNanos;
  private final ProcessHandle[] peers;
  private final MemorySegment epochWord;
  private final MemorySegment timespec = Futex.timespec(java.lang.foreign.Arena.ofAuto());
  private long round;

  ControlBlock(MemorySegment seg, int rank, int ranks, int slotBytes, long timeoutNanos) {
    this.seg = seg;
    this.rank = rank;
    this.ranks = ranks;
    this.slotBytes = slotBytes;
    this.timeoutNanos = timeoutNanos;
    this.peers = new ProcessHandle[ranks];
    this.epochWord = seg.asSlice(EPOCH, 4);
  }

  static long bytes(int ranks, int slotBytes) {
    return slotsAt(ranks) + 2L * ranks * slotBytes;
  }

  private static long slotsAt(int ranks) {
    return HEADER + ((ranks * LINE + 4095) / 4096) * 4096;
  }

  /** Rank 0 writes the header into the fresh file. */
  static void format(MemorySegment seg, int ranks, int slotBytes) {
    seg.set(ValueLayout.JAVA_INT, 8, ranks);
    seg.set(ValueLayout.JAVA_INT, 12, slotBytes);
    LONG.setRelease(seg, 0L, MAGIC);
  }

  /** Checks the header and registers this process's pid. */
  void register() {
    if ((long) LONG.getAcquire(seg, 0L) != MAGIC || seg.get(ValueLayout.JAVA_INT, 8) != ranks
        || seg.get(ValueLayout.JAVA_INT, 12) != slotBytes) {
      throw new CollectiveException("rank " + rank + ": the control block is not this world's (ranks or slot size differ)");
    }
    LONG.setRelease(seg, line(rank) + 8, ProcessHandle.current().pid());
  }

  /** After every rank registered: the peers' processes, to tell a dead one from a slow one. */
  void watchPeers() {
    for (int p = 0; p < ranks; p++) {
      long pid = (long) LONG.getAcquire(seg, line(p) + 8);
      Optional<ProcessHandle> h = ProcessHandle.of(pid);
      peers[p] = p == rank ? null : h.orElse(null); // not visible (another pid namespace): the timeout still holds
    }
  }

  private long line(int r) {
    return HEADER + r * LINE;
  }

  private long slot(int r, long round) {
    return slotsAt(ranks) + ((long) r * 2 + (round & 1)) * slotBytes;
  }

  /** Largest message a slot carries; a round with a larger one goes through the store. */
  int capacity() {
    return slotBytes - 4;
  }

  /**
   * One round: every rank's message, by rank; null at a rank whose message did not fit its slot
   * ({@code mine} too big: the caller then exchanges through the store, and so does every rank
   * that sees a null).
   */
  byte[][] exchange(byte[] mine) {
    long g = ++round;
    long at = slot(rank, g);
    if (mine.length <= capacity()) {
      seg.set(ValueLayout.JAVA_INT, at, mine.length);
      MemorySegment.copy(mine, 0, seg, ValueLayout.JAVA_BYTE, at + 4, mine.length);
    } else {
      seg.set(ValueLayout.JAVA_INT, at, -1);
    }
    LONG.setVolatile(seg, line(rank), g);
    wakeSleepers();
    await(g);
    byte[][] all = new byte[ranks][];
    for (int p = 0; p < ranks; p++) {
      long s = slot(p, g);
      int n = seg.get(ValueLayout.JAVA_INT, s);
      if (n >= 0) all[p] = p == rank ? mine : seg.asSlice(s + 4, n).toArray(ValueLayout.JAVA_BYTE);
    }
    return all;
  }

  private void await(long g) {
    long start = System.nanoTime();
    long deadline = start + timeoutNanos;
    long nextLiveness = start + LIVENESS_NANOS;
    Backoff backoff = new Backoff(SPINS, YIELDS, MIN_PARK_NANOS, MAX_PARK_NANOS);
    int from = 0;
    while (true) {
      while (from < ranks && (long) LONG.getAcquire(seg, line(from)) >= g) from++;
      if (from == ranks) return;
      checkAborted();
      if (!backoff.parking()) {
        backoff.spinOrYield();
        continue;
      }
      long now = System.nanoTime();
      if (now - nextLiveness >= 0) {
        checkPeers(g);
        nextLiveness = now + LIVENESS_NANOS;
      }
      if (now - deadline >= 0) timeout(g);
      if (Futex.available()) sleep(g, from, Math.min(deadline, nextLiveness) - now);
      else backoff.park(this, deadline - now); // no futex: short naps, growing
    }
  }

  /**
   * Sleeps until a peer publishes (or aborts), at most {@code nanos}: registered as a sleeper, the
   * epoch read, the condition checked once more, then the futex waits only while the epoch is
   * unchanged. A publisher stores its round, bumps the epoch, then reads the sleeper count (all
   * volatile, so in one order): either it sees this sleeper and wakes it, or this sleeper sees its
   * round or its epoch.
   */
  private void sleep(long g, int from, long nanos) {
    INT.getAndAdd(seg, SLEEPERS, 1);
    try {
      int epoch = (int) INT.getVolatile(seg, EPOCH);
      for (int p = from; p < ranks; p++) if ((long) LONG.getVolatile(seg, line(p)) < g) {
        if (aborted()) return;
        Futex.await(epochWord, epoch, Math.max(1, nanos), timespec);
        return;
      }
    } finally {
      INT.getAndAdd(seg, SLEEPERS, -1);
    }
  }

  private void wakeSleepers() {
    INT.getAndAdd(seg, EPOCH, 1);
    if ((int) INT.getVolatile(seg, SLEEPERS) > 0) Futex.wake(epochWord);
  }

  private List<Integer> missing(long g) {
    List<Integer> m = new ArrayList<>();
    for (int p = 0; p < ranks; p++) if ((long) LONG.getAcquire(seg, line(p)) < g) m.add(p);
    return m;
  }

  private void checkPeers(long g) {
    for (int p : missing(g)) checkAlive(p, "while rank " + rank + " waited for it");
  }

  /**
   * Between collectives: fails the world, as a wait would, when any peer left it or its process
   * is gone (not only the ones a round waits for: a device stream may wait for any of them).
   */
  void checkPeers() {
    for (int p = 0; p < ranks; p++) if (p != rank) checkAlive(p, "while rank " + rank + " was not in a collective");
  }

  /** Fails the world naming peer p when it left or its process is gone; {@code when} says what this rank was doing. */
  private void checkAlive(int p, String when) {
    if ((long) LONG.getAcquire(seg, line(p) + 16) != 0) {
      fail("rank " + p + " left the world (it closed its transport) " + when, List.of(p));
    }
    ProcessHandle h = peers[p];
    if (h != null && !h.isAlive()) {
      fail("rank " + p + " (pid " + h.pid() + ") died: its process is gone, " + when, List.of(p));
    }
  }

  private void timeout(long g) {
    fail("rank(s) " + missing(g) + " did not reach the collective within " + timeoutNanos / 1_000_000 + " ms (rank "
        + rank + " waited)", missing(g));
  }

  private void fail(String msg, List<Integer> missing) {
    abort(msg);
    throw new CollectiveTimeoutException(msg, missing);
  }

  /** Fails every rank's current and next collective with {@code message}; the first abort wins. */
  void abort(String message) {
    if (seg.get(ValueLayout.JAVA_LONG, ABORT_WORD) != 0) return;
    if (!LONG.compareAndSet(seg, ABORT_WORD, 0L, -1L)) return;
    byte[] b = message.getBytes(StandardCharsets.UTF_8);
    int n = Math.min(b.length, ABORT_MESSAGE_BYTES);
    seg.set(ValueLayout.JAVA_INT, ABORT_LEN, n);
    MemorySegment.copy(b, 0, seg, ValueLayout.JAVA_BYTE, ABORT_TEXT, n);
    LONG.setVolatile(seg, ABORT_WORD, (long) rank + 1);
    wakeSleepers();
  }

  boolean aborted() {
    return (long) LONG.getAcquire(seg, ABORT_WORD) > 0;
  }

  void checkAborted() {
    long w = (long) LONG.getAcquire(seg, ABORT_WORD);
    if (w <= 0) return;
    int n = seg.get(ValueLayout.JAVA_INT, ABORT_LEN);
    String msg = new String(seg.asSlice(ABORT_TEXT, n).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
    throw new CollectiveException("world aborted by rank " + (w - 1) + ": " + msg);
  }

  /** Marks this rank as gone on purpose: peers still waiting for it fail at once, naming it. */
  void leave() {
    LONG.setVolatile(seg, line(rank) + 16, 1L);
    wakeSleepers();
  }
}
