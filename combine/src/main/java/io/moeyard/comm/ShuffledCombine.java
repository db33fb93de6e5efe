package io.moeyard.comm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.MemorySegment;
import java.util.function.Supplier;

/**
 * The part of {@link Communicator#combineShuffled} that every backend shares: the checks of the
 * targets, and the delivery that follows a backend's own combine into host rows at home. Engines
 * call {@code combineShuffled}; backends call this.
 *
 * <p>Delivery pulls where it can: every home announces where its combined rows lie, and every
 * target copies the rows of the tokens that move to it, by source rank then token. Pulling rather
 * than pushing lets the target's {@code into} be any memory of its own, also between processes
 * (the homes' rows lie in their peer memory). Between ranks that cannot read each other's memory
 * (different machines) the home packs and sends instead ({@link Transport#sendRecv}), straight
 * into the target's {@code into}. The closing barrier keeps every home's rows, and the
 * communicator that owns them, alive until the last target has read them: like every other
 * collective, delivery leaves no peer access pending when it returns.
 */
public final class ShuffledCombine {
  /** Rows of a backend's shuffled-combine home buffer: one per token a rank may dispatch. */
  public static int homeRows(CommConfig config) {
    return Math.max(1, config.maxTokens());
  }

  /**
   * What is wrong with this rank's targets, or null: {@code nextRank} of the dispatch's length with
   * every entry a rank, an {@code into} of the combine's row format. A backend announces it in its
   * combine's first exchange, so that every rank fails alike before any row is written.
   */
  public static String targetProblem(int rank, int ranks, int tokens, CommConfig config, int[] nextRank, RowBuffer into) {
    if (nextRank == null) return me(rank) + "nextRank is null";
    if (into == null) return me(rank) + "into is null";
    if (into.hidden() != config.hidden() || into.dtype() != config.combineType()) {
      return me(rank) + "the shuffle buffer is " + into.hidden() + " x " + into.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.combineType().cliName();
    }
    if (nextRank.length != tokens) {
      return me(rank) + "nextRank has " + nextRank.length + " entries, the dispatch had " + tokens + " tokens";
    }
    for (int t = 0; t < nextRank.length; t++) {
      if (nextRank[t] < 0 || nextRank[t] >= ranks) {
        return me(rank) + "nextRank[" + t + "] = " + nextRank[t] + " is outside [0, " + ranks + ")";
      }
    }
    return null;
  }

    /** How a message of {@code rank} starts; built only for a message, never on the way to none. */
  private static String me(int rank) {
    return "rank " + rank + ": ";
  }

  private final Transport transport;
  private final int rank;
  private final int ranks;
  /** Rows this rank packs for targets that cannot read its home, asked for only then. */
  private final Supplier<RowBuffer> pack;
  /** The ranks whose memory this rank cannot read, ascending: fixed for a transport's life. */
  private final int[] unreachable;
  // scratch of one delivery, sized for the world here and reused: a delivery allocates nothing
  // on ranks that share this JVM but the all-gather's array (and, between machines, the slices it sends)
  /**
   * This rank's announcements, two that alternate between deliveries: peers read the one of
   * delivery g until its closing barrier, or, when g is refused, until they throw; a refused rank
   * may already fill delivery g + 1's, never g's again before every peer reached g + 1's all-gather.
   */
  private final Announcement[] mine = {new Announcement(), new Announcement()};
  private int deliveries;
  private final Announcement[] all;
  private final int[] arriving;
  private final int[] blockStart;
  private final boolean[] pulls;
  private final MemorySegment[] send;
  private final MemorySegment[] recv;
  /** What {@link #deliver} returns, refilled by the next one; its arrays grow to the most rows that arrived. */
  private final Arrivals arrivals = new Arrivals();
  private int[] src = new int[0];
  private int[] tok = new int[0];

  /**
   * One communicator's delivery on {@code transport}: {@code pack} gives the rows this rank packs
   * for targets that cannot read its home (rows of its own, asked for only when there are such
   * targets). The communicator owns it; one delivery runs at a time, like every collective.
   */
  public ShuffledCombine(Transport transport, Supplier<RowBuffer> pack) {
    this.transport = transport;
    this.rank = transport.rank();
    this.ranks = transport.size();
    this.pack = pack;
    int n = 0;
    for (int r = 0; r < ranks; r++) if (!transport.reaches(r)) n++;
    this.unreachable = new int[n];
    n = 0;
    for (int r = 0; r < ranks; r++) if (!transport.reaches(r)) unreachable[n++] = r;
    this.all = new Announcement[ranks];
    this.arriving = new int[ranks];
    this.blockStart = new int[ranks + 1];
    this.pulls = new boolean[ranks];
    this.send = new MemorySegment[ranks];
    this.recv = new MemorySegment[ranks];
  }

  /**
   * After this rank combined its tokens into {@code home}: moves every token's row to its target's
   * {@code into}. A target copies the rows of homes it reaches ({@link Transport#reaches}: this
   * JVM's memory, or peer memory of its machine) straight out of them; a home the target cannot
   * read (another machine's rank, a transport without peer memory) packs the target's rows, in
   * token order, into the rows {@code pack} gives and sends them with {@link Transport#sendRecv}
   * into the target's {@code into}, where they land in the same place. Fails every rank alike,
   * before any {@code into} is written, when some target's {@code into} is too small for what
   * arrives. The {@link Arrivals} returned are valid until the next delivery.
   */
  public Arrivals deliver(int[] nextRank, RowBuffer into, RowBuffer home) {
    // rows outside memory peers can reach (a transport without peer memory) are sent, never named
    boolean shared = transport.reachable(home.segment());
    Announcement announced = mine[deliveries++ & 1].set(nextRank, into.rows(), shared ? home : null, shared, unreachable);
    Object[] got = transport.allGather(announced, CODEC);
    for (int r = 0; r < ranks; r++) all[r] = (Announcement) got[r];
    java.util.Arrays.fill(arriving, 0);
    boolean messages = false;
    for (Announcement a : all) {
      for (int s : a.nextRank) arriving[s]++;
      messages |= a.unreachable.length > 0 || !a.homeShared;
    }
    for (int s = 0; s < ranks; s++) {
      if (arriving[s] > all[s].intoRows) {
        throw new CollectiveException("combine: rank " + s + ": the shuffle buffer holds " + all[s].intoRows + " rows, "
            + arriving[s] + " tokens arrive");
      }
    }
    // arrivals lie by source rank, then token: each home's rows form one block of into
    if (src.length < arriving[rank]) {
      src = new int[arriving[rank]];
      tok = new int[arriving[rank]];
    }
    int n = 0;
    for (int r = 0; r < ranks; r++) {
      blockStart[r] = n;
      int[] next = all[r].nextRank;
      for (int t = 0; t < next.length; t++) {
        if (next[t] != rank) continue;
        src[n] = r;
        tok[n++] = t;
      }
    }
    blockStart[ranks] = n;
    long rowBytes = into.rowBytes();
    // this rank reads home r's rows itself when it reaches r and r named them; else r sends them
    for (int r = 0; r < ranks; r++) pulls[r] = all[r].homeShared && java.util.Arrays.binarySearch(unreachable, r) < 0;
    if (messages) {
      java.util.Arrays.fill(send, null);
      java.util.Arrays.fill(recv, null);
      RowBuffer packed = null;
      int at = 0;
      for (int q = 0; q < ranks; q++) {
        if (shared && java.util.Arrays.binarySearch(all[q].unreachable, rank) < 0) continue; // q reads them
        int start = at;
        for (int t = 0; t < nextRank.length; t++) {
          if (nextRank[t] != q) continue;
          if (packed == null) packed = pack.get();
          RowCopy.copy(home.segment(), home.rowOffset(t), packed.segment(), packed.rowOffset(at++), rowBytes);
        }
        if (at > start) send[q] = packed.segment().asSlice(packed.rowOffset(start), (at - start) * rowBytes);
      }
      for (int r = 0; r < ranks; r++) {
        int rows = blockStart[r + 1] - blockStart[r];
        if (!pulls[r] && rows > 0) recv[r] = into.segment().asSlice(into.rowOffset(blockStart[r]), rows * rowBytes);
      }
      transport.sendRecv(send, recv);
    }
    for (int i = 0; i < n; i++) {
      if (!pulls[src[i]]) continue;
      RowBuffer from = all[src[i]].home;
      RowCopy.copy(from.segment(), from.rowOffset(tok[i]), into.segment(), into.rowOffset(i), rowBytes);
    }
    // every home's rows (and the packed ones) stay until the last target has read them
    transport.barrier();
    java.util.Arrays.fill(all, null);
    arrivals.set(src, tok, n);
    return arrivals;
  }

  /**
   * What each rank tells the others before rows move: targets, room in its {@code into}, its
   * combined rows, and the ranks whose rows it cannot read (ascending), which send it theirs. A
   * rank refills one of its two by turns for every delivery (ranks of one JVM read it as it is);
   * a process transport decodes a fresh one per peer.
   */
  private static final class Announcement {
    int[] nextRank;
    int intoRows;
    RowBuffer home;
    boolean homeShared;
    int[] unreachable;

    Announcement set(int[] nextRank, int intoRows, RowBuffer home, boolean homeShared, int[] unreachable) {
      this.nextRank = nextRank;
      this.intoRows = intoRows;
      this.home = home;
      this.homeShared = homeShared;
      this.unreachable = unreachable;
      return this;
    }
  }

  private static final MessageCodec<Announcement> CODEC = new MessageCodec<>() {
    @Override
    public void write(Announcement a, MessageWriter out) {
      out.putInts(a.nextRank).putInt(a.intoRows).putRows(a.home).putBoolean(a.homeShared).putInts(a.unreachable);
    }

    @Override
    public Announcement read(MessageReader in) {
      return new Announcement().set(in.getInts(), in.getInt(), in.getRows(), in.getBoolean(), in.getInts());
    }
  };
}
