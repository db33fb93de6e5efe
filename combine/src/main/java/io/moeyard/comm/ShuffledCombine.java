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
  private ShuffledCombine() {}

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
    String me = "rank " + rank + ": ";
    if (nextRank == null) return me + "nextRank is null";
    if (into == null) return me + "into is null";
    if (into.hidden() != config.hidden() || into.dtype() != config.combineType()) {
      return me + "the shuffle buffer is " + into.hidden() + " x " + into.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.combineType().cliName();
    }
    if (nextRank.length != tokens) {
      return me + "nextRank has " + nextRank.length + " entries, the dispatch had " + tokens + " tokens";
    }
    for (int t = 0; t < nextRank.length; t++) {
      if (nextRank[t] < 0 || nextRank[t] >= ranks) {
        return me + "nextRank[" + t + "] = " + nextRank[t] + " is outside [0, " + ranks + ")";
      }
    }
    return null;
  }

  /**
   * After this rank combined its tokens into {@code home}: moves every token's row to its target's
   * {@code into}. A target copies the rows of homes it reaches ({@link Transport#reaches}: this
   * JVM's memory, or peer memory of its machine) straight out of them; a home the target cannot
   * read (another machine's rank, a transport without peer memory) packs the target's rows, in
   * token order, into {@code pack} (rows of this rank's own, asked for only then) and sends them
   * with {@link Transport#sendRecv} into the target's {@code into}, where they land in the same
   * place. Fails every rank alike, before any {@code into} is written, when some target's
   * {@code into} is too small for what arrives.
   */
  public static Arrivals deliver(Transport transport, int[] nextRank, RowBuffer into, RowBuffer home,
      Supplier<RowBuffer> pack) {
    int rank = transport.rank();
    int ranks = transport.size();
    int[] unreachable = java.util.stream.IntStream.range(0, ranks).filter(r -> !transport.reaches(r)).toArray();
    // rows outside memory peers can reach (a transport without peer memory) are sent, never named
    boolean shared = transport.reachable(home.segment());
    Object[] got = transport.allGather(new Announcement(nextRank, into.rows(), shared ? home : null, shared, unreachable), CODEC);
    Announcement[] all = new Announcement[ranks];
    for (int r = 0; r < ranks; r++) all[r] = (Announcement) got[r];
    int[] arriving = new int[ranks];
    boolean messages = false;
    for (Announcement a : all) {
      for (int s : a.nextRank()) arriving[s]++;
      messages |= a.unreachable().length > 0 || !a.homeShared();
    }
    for (int s = 0; s < ranks; s++) {
      if (arriving[s] > all[s].intoRows()) {
        throw new CollectiveException("combine: rank " + s + ": the shuffle buffer holds " + all[s].intoRows() + " rows, "
            + arriving[s] + " tokens arrive");
      }
    }
    // arrivals lie by source rank, then token: each home's rows form one block of into
    int[] src = new int[arriving[rank]];
    int[] tok = new int[arriving[rank]];
    int[] blockStart = new int[ranks + 1];
    int n = 0;
    for (int r = 0; r < ranks; r++) {
      blockStart[r] = n;
      int[] next = all[r].nextRank();
      for (int t = 0; t < next.length; t++) {
        if (next[t] != rank) continue;
        src[n] = r;
        tok[n++] = t;
      }
    }
    blockStart[ranks] = n;
    long rowBytes = into.rowBytes();
    // this rank reads home r's rows itself when it reaches r and r named them; else r sends them
    boolean[] pulls = new boolean[ranks];
    for (int r = 0; r < ranks; r++) pulls[r] = all[r].homeShared() && java.util.Arrays.binarySearch(unreachable, r) < 0;
    if (messages) {
      MemorySegment[] send = new MemorySegment[ranks];
      MemorySegment[] recv = new MemorySegment[ranks];
      RowBuffer packed = null;
      int at = 0;
      for (int q = 0; q < ranks; q++) {
        if (shared && java.util.Arrays.binarySearch(all[q].unreachable(), rank) < 0) continue; // q reads them
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
      RowBuffer from = all[src[i]].home();
      RowCopy.copy(from.segment(), from.rowOffset(tok[i]), into.segment(), into.rowOffset(i), rowBytes);
    }
    // every home's rows (and the packed ones) stay until the last target has read them
    transport.barrier();
    return new Arrivals(src, tok);
  }

  /**
   * What each rank tells the others before rows move: targets, room in its {@code into}, its
   * combined rows, and the ranks whose rows it cannot read (ascending), which send it theirs.
   */
  private record Announcement(int[] nextRank, int intoRows, RowBuffer home, boolean homeShared, int[] unreachable) {}

  private static final MessageCodec<Announcement> CODEC = new MessageCodec<>() {
    @Override
    public void write(Announcement a, MessageWriter out) {
      out.putInts(a.nextRank()).putInt(a.intoRows()).putRows(a.home()).putBoolean(a.homeShared()).putInts(a.unreachable());
    }

    @Override
    public Announcement read(MessageReader in) {
      return new Announcement(in.getInts(), in.getInt(), in.getRows(), in.getBoolean(), in.getInts());
    }
  };
}
