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
 *
 * <p>A block may serve a subset of a larger world (the ranks of one machine,
 * {@link ClusterTransport}): its lines are indexed by local index, while every message it
 * produces, its abort word and the ranks it names are world ranks ({@code worldRanks}).
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
  /** How many world ranks the abort names as missing, then the ranks: a timeout's or a death's, read as one. */
  private static final long ABORT_MISSING = 2056;
  private static final int MAX_ABORT_MISSING = (int) ((4096 - ABORT_MISSING - 4) / 4);
  private static final int SPINS = 2_000;
  private static final int YIELDS = 100;
  private static final long MIN_PARK_NANOS = 2_000;
  private static final long MAX_PARK_NANOS = 200_000;
  private static final long LIVENESS_NANOS = 20_000_000;
  private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
  private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

  private final MemorySegment seg;
  /** This rank's local index. */
  private final int rank;
  private final int ranks;
  /** Local index to world rank: what every message names. */
  private final int[] worldRanks;
  /** Run on every liveness check of a wait (it may throw, ending the wait): news from outside the block. */
  private final Runnable watch;
  private final int slotBytes;
  private final long timeoutNanos;
  private final ProcessHandle[] peers;
  private final MemorySegment epochWord;
  private final MemorySegment timespec = Futex.timespec(java.lang.foreign.Arena.ofAuto());
  private long round;

  ControlBlock(MemorySegment seg, int rank, int ranks, int slotBytes, long timeoutNanos) {
    this(seg, rank, identity(ranks), slotBytes, timeoutNanos, null);
  }

  /**
   * A block of {@code worldRanks.length} ranks, this one at local index {@code rank}; a wait runs
   * {@code watch} (null: nothing) whenever it checks its peers' processes.
   */
  ControlBlock(MemorySegment seg, int rank, int[] worldRanks, int slotBytes, long timeoutNanos, Runnable watch) {
    this.seg = seg;
    this.rank = rank;
    this.ranks = worldRanks.length;
    this.worldRanks = worldRanks.clone();
    this.watch = watch;
    this.slotBytes = slotBytes;
    this.timeoutNanos = timeoutNanos;
    this.peers = new ProcessHandle[ranks];
    this.epochWord = seg.asSlice(EPOCH, 4);
  }

  private static int[] identity(int n) {
    int[] r = new int[n];
    for (int i = 0; i < n; i++) r[i] = i;
    return r;
  }

  private int me() {
    return worldRanks[rank];
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
      throw new CollectiveException("rank " + me() + ": the control block is not this world's (ranks or slot size differ)");
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
    return exchange(mine, timeoutNanos);
  }

  /** {@link #exchange(byte[])} waiting at most {@code waitNanos} for the others. */
  byte[][] exchange(byte[] mine, long waitNanos) {
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
    await(g, waitNanos);
    byte[][] all = new byte[ranks][];
    for (int p = 0; p < ranks; p++) {
      long s = slot(p, g);
      int n = seg.get(ValueLayout.JAVA_INT, s);
      if (n >= 0) all[p] = p == rank ? mine : seg.asSlice(s + 4, n).toArray(ValueLayout.JAVA_BYTE);
    }
    return all;
  }

  /** The rounds' backoff, reset for each wait: a rank waits in one round at a time (its transport's exchange is synchronized). */
  private final Backoff backoff = new Backoff(SPINS, YIELDS, MIN_PARK_NANOS, MAX_PARK_NANOS);

  private void await(long g, long waitNanos) {
    long start = System.nanoTime();
    long deadline = start + waitNanos;
    long nextLiveness = start + LIVENESS_NANOS;
    backoff.reset();
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
        if (watch != null) watch.run();
        nextLiveness = now + LIVENESS_NANOS;
      }
      if (now - deadline >= 0) timeout(g, waitNanos);
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

  /** The local indices of the ranks that have not published round g. */
  private List<Integer> missing(long g) {
    List<Integer> m = new ArrayList<>();
    for (int p = 0; p < ranks; p++) if ((long) LONG.getAcquire(seg, line(p)) < g) m.add(p);
    return m;
  }

  private List<Integer> world(List<Integer> local) {
    List<Integer> w = new ArrayList<>(local.size());
    for (int p : local) w.add(worldRanks[p]);
    return w;
  }

  private void checkPeers(long g) {
    for (int p : missing(g)) checkAlive(p, g, "while rank " + me() + " waited for it");
  }

  /**
   * Between collectives: fails the world, as a wait would, when any peer left it or its process
   * is gone (not only the ones a round waits for: a device stream may wait for any of them).
   */
  void checkPeers() {
    for (int p = 0; p < ranks; p++) if (p != rank) checkAlive(p, 0, "while rank " + me() + " was not in a collective");
  }

  /**
   * Fails the world naming peer p when it left or its process is gone, unless it published round
   * {@code g} first (0: between rounds); {@code when} says what this rank was doing. A peer may
   * publish the round a rank waits in, leave it and close its transport between the rank's scan
   * for missing peers and this check: no failure of it. Its close comes after its publication, so
   * a rank that sees the close sees the round too.
   */
  private void checkAlive(int p, long g, String when) {
    int w = worldRanks[p];
    boolean left = (long) LONG.getAcquire(seg, line(p) + 16) != 0;
    ProcessHandle h = peers[p];
    boolean died = h != null && !h.isAlive();
    if (!left && !died) return;
    if (g > 0 && (long) LONG.getAcquire(seg, line(p)) >= g) return;
    if (left) fail("rank " + w + " left the world (it closed its transport) " + when, List.of(w));
    fail("rank " + w + " (pid " + h.pid() + ") died: its process is gone, " + when, List.of(w));
  }

  private void timeout(long g, long waitNanos) {
    List<Integer> missing = world(missing(g));
    fail("rank(s) " + missing + " did not reach the collective within " + waitNanos / 1_000_000 + " ms (rank "
        + me() + " waited)", missing);
  }

  /** {@code missing}: world ranks. */
  private void fail(String msg, List<Integer> missing) {
    abort(msg, missing);
    throw new CollectiveTimeoutException(msg, missing);
  }

  /** Fails every rank's current and next collective with {@code message}; the first abort wins. */
  void abort(String message) {
    abort(message, List.of());
  }

  /**
   * {@link #abort(String)} that also records {@code missing} (world ranks, the first
   * {@value #MAX_ABORT_MISSING} of them) for {@link #abortMissing}.
   */
  void abort(String message, List<Integer> missing) {
    if (seg.get(ValueLayout.JAVA_LONG, ABORT_WORD) != 0) return;
    if (!LONG.compareAndSet(seg, ABORT_WORD, 0L, -1L)) return;
    byte[] b = message.getBytes(StandardCharsets.UTF_8);
    int n = Math.min(b.length, ABORT_MESSAGE_BYTES);
    seg.set(ValueLayout.JAVA_INT, ABORT_LEN, n);
    MemorySegment.copy(b, 0, seg, ValueLayout.JAVA_BYTE, ABORT_TEXT, n);
    int m = Math.min(missing.size(), MAX_ABORT_MISSING);
    seg.set(ValueLayout.JAVA_INT, ABORT_MISSING, m);
    for (int i = 0; i < m; i++) seg.set(ValueLayout.JAVA_INT, ABORT_MISSING + 4 + 4L * i, missing.get(i));
    LONG.setVolatile(seg, ABORT_WORD, (long) me() + 1);
    wakeSleepers();
  }

  /** The world ranks the abort named as missing (a timeout's, a death's); empty before an abort and for a plain one. */
  List<Integer> abortMissing() {
    if (!aborted()) return List.of();
    int m = seg.get(ValueLayout.JAVA_INT, ABORT_MISSING);
    List<Integer> out = new ArrayList<>(m);
    for (int i = 0; i < m; i++) out.add(seg.get(ValueLayout.JAVA_INT, ABORT_MISSING + 4 + 4L * i));
    return out;
  }

  boolean aborted() {
    return (long) LONG.getAcquire(seg, ABORT_WORD) > 0;
  }

  /**
   * Between collectives: {@link #checkPeers()}, except that a peer that left after another rank
   * aborted the world (it saw the failure and closed its transport, as it should) reports that
   * abort, the cause, rather than its leaving. A peer aborts before it leaves, so a rank that sees
   * it gone sees its abort too.
   */
  void checkPeersOrTheirAbort() {
    try {
      checkPeers();
    } catch (CollectiveException e) {
      long w = (long) LONG.getAcquire(seg, ABORT_WORD);
      if (w > 0 && w - 1 != me()) checkAborted();
      throw e;
    }
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
