package io.moeyard.comm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.RowCopy;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.Transport;

/**
 * The part of {@link Communicator#combineShuffled} that every backend shares: the checks of the
 * targets, and the delivery that follows a backend's own combine into host rows at home. Engines
 * call {@code combineShuffled}; backends call this.
 *
 * <p>Delivery pulls: every home announces where its combined rows lie, and every target copies the
 * rows of the tokens that move to it, by source rank then token. Pulling rather than pushing lets
 * the target's {@code into} be any memory of its own, also between processes (the homes' rows lie
 * in their peer memory). The closing barrier keeps every home's rows, and the communicator that
 * owns them, alive until the last target has read them: like every other collective, delivery
 * leaves no peer access pending when it returns.
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
   * After this rank combined its tokens into {@code home} (rows every rank can read: this JVM's
   * memory for ranks that share it, peer memory between processes): moves every token's row to
   * its target's {@code into}. Fails every rank alike, before any {@code into} is written, when
   * some target's {@code into} is too small for what arrives.
   */
  public static Arrivals deliver(Transport transport, int[] nextRank, RowBuffer into, RowBuffer home) {
    int rank = transport.rank();
    int ranks = transport.size();
    Object[] got = transport.allGather(new Announcement(nextRank, into.rows(), home), CODEC);
    Announcement[] all = new Announcement[ranks];
    for (int r = 0; r < ranks; r++) all[r] = (Announcement) got[r];
    int[] arriving = new int[ranks];
    for (Announcement a : all) for (int s : a.nextRank()) arriving[s]++;
    for (int s = 0; s < ranks; s++) {
      if (arriving[s] > all[s].intoRows()) {
        throw new CollectiveException("combine: rank " + s + ": the shuffle buffer holds " + all[s].intoRows() + " rows, "
            + arriving[s] + " tokens arrive");
      }
    }
    int[] src = new int[arriving[rank]];
    int[] tok = new int[arriving[rank]];
    long rowBytes = into.rowBytes();
    int n = 0;
    for (int r = 0; r < ranks; r++) {
      int[] next = all[r].nextRank();
      RowBuffer from = all[r].home();
      for (int t = 0; t < next.length; t++) {
        if (next[t] != rank) continue;
        RowCopy.copy(from.segment(), from.rowOffset(t), into.segment(), into.rowOffset(n), rowBytes);
        src[n] = r;
        tok[n++] = t;
      }
    }
    transport.barrier();
    return new Arrivals(src, tok);
  }

  /** What each rank tells the others before rows move: targets, room in its {@code into}, its combined rows. */
  private record Announcement(int[] nextRank, int intoRows, RowBuffer home) {}

  private static final MessageCodec<Announcement> CODEC = new MessageCodec<>() {
    @Override
    public void write(Announcement a, MessageWriter out) {
      out.putInts(a.nextRank()).putInt(a.intoRows()).putRows(a.home());
    }

    @Override
    public Announcement read(MessageReader in) {
      return new Announcement(in.getInts(), in.getInt(), in.getRows());
    }
  };
}
