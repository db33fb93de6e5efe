package io.moeyard.engine.rendezvous;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.EncodedGather;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.SegmentTable;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A {@link Transport} for ranks on any machines that reach MASTER_ADDR: every collective is a
 * round of the {@link ProcessWorld}'s TCP store, so it needs nothing but that connection, and
 * serves host meetings (a device backend's set-up and per-call agreements) where ranks cannot
 * share memory. Peers cannot store into each other's memory ({@link #peerStores()},
 * {@link #reachable} false; {@link #peerMemory} refused) and a message cannot name a segment;
 * bytes travel with {@link #sendRecv}.
 *
 * <pre>{@code
 * try (StoreTransport t = StoreTransport.join(Map.of("model", "x"))) {   // RANK, WORLD_SIZE, ... from the env
 *   Object[] all = t.allGather(myId, ID_CODEC);
 *   ...
 * }
 * }</pre>
 *
 * <p>Every wait is the store's: a rank that does not reach a collective within the world's
 * timeout, or whose connection drops, fails the others naming it
 * ({@link CollectiveTimeoutException}). {@link #abort} reaches every rank at once through the
 * store. A failure of the world (timeout, lost rank, abort) is final: every later call on this
 * rank fails with it. Bad input (a segment in a message, a plain value of another type, sizes of
 * {@link #sendRecv} that do not match) fails every rank with the same message and leaves the world
 * usable. Between collectives, {@link #checkPeers} sees a failure the store has pushed (a dropped
 * rank, an abort, a timeout) and the store's own end (rank 0's death: its connection's end, read
 * for at most a millisecond when nothing else is waiting).
 *
 * <p>Owns its world (closes it).
 */
public final class StoreTransport implements Transport, AutoCloseable {
  /**
   * What one round of {@link #sendRecv} carries at most, every sender's piece together: the store
   * sends each rank every rank's piece, so this bounds what a rank holds per round.
   */
  static final int ROUND_BYTES = 64 << 20;
  private static final int MIN_PIECE = 64 << 10;

  /** First int of every blob: the rest is the message (or a refusal, {@link EncodedGather}'s format). */
  private static final int OK = EncodedGather.OK;

  private final ProcessWorld world;
  private final int pieceBytes;
  private final SegmentTable noSegments;
  private final AtomicReference<CollectiveException> failure = new AtomicReference<>();
  private volatile boolean closed;

  private StoreTransport(ProcessWorld world, int pieceBytes) {
    this.world = world;
    this.pieceBytes = pieceBytes;
    this.noSegments = new NoSegments(world.rank());
  }

  /** Joins the process world the environment describes (torchrun variables), default timeout. */
  public static StoreTransport join(Map<String, String> config) {
    return open(ProcessWorld.join(config));
  }

  /** Joins as {@code env} says; {@code timeout} bounds the join and every later collective. */
  public static StoreTransport join(RankEnv env, Map<String, String> config, Duration timeout) {
    return open(ProcessWorld.join(env, config, timeout));
  }

  /**
   * The store transport of {@code world}, which it then owns (closing both is harmless). Not a
   * collective; its collectives are bounded by the timeout the world was joined with.
   */
  public static StoreTransport open(ProcessWorld world) {
    long piece = Math.max(MIN_PIECE, ROUND_BYTES / world.size());
    return open(world, (int) Math.min(piece, Wire.MAX_BLOB - headerBytes(world.size())));
  }

  /** With {@code pieceBytes} of each sender's bytes per {@link #sendRecv} round: tests split small messages. */
  static StoreTransport open(ProcessWorld world, int pieceBytes) {
    if (pieceBytes < 1 || pieceBytes > Wire.MAX_BLOB - headerBytes(world.size())) {
      throw new IllegalArgumentException("pieceBytes=" + pieceBytes + " must lie in [1, "
          + (Wire.MAX_BLOB - headerBytes(world.size())) + "]");
    }
    return new StoreTransport(world, pieceBytes);
  }

  @Override
  public int rank() {
    return world.rank();
  }

  @Override
  public int size() {
    return world.size();
  }

  @Override
  public Topology topology() {
    return world.topology();
  }

  @Override
  public boolean peerStores() {
    return false;
  }

  @Override
  public boolean sharesAddressSpace() {
    return false;
  }

  @Override
  public boolean reachable(MemorySegment segment) {
    return false;
  }

  /** Refused: ranks may be on different machines, so no memory of this rank is a peer's. */
  @Override
  public PeerMemory peerMemory(long bytes) {
    throw new UnsupportedOperationException("rank " + rank() + ": StoreTransport has no shared memory (its ranks may be "
        + "on different machines), so peers cannot store into any memory of this rank; bytes travel with sendRecv");
  }

  /** {@link MessageCodec#PLAIN} values only; anything else needs {@link #allGather(Object, MessageCodec)}. */
  @Override
  public Object[] allGather(Object mine) {
    return allGather(mine, MessageCodec.PLAIN);
  }

  /**
   * Encodes {@code mine}, exchanges every rank's bytes through the store and decodes each peer's
   * (this rank's own entry is {@code mine} itself). A message this rank cannot encode (a segment,
   * a value the codec refuses) or that exceeds the store's limit fails every rank alike.
   */
  @Override
  public synchronized <T> Object[] allGather(T mine, MessageCodec<T> codec) {
    checkUsable();
    return EncodedGather.allGather(rank(), mine, codec, noSegments, Wire.MAX_BLOB, b -> exchange(b).toArray(new byte[0][]));
  }

  /**
   * {@link Transport#sendRecv}'s exchange with the bytes themselves through the store: a first
   * round carries every rank's sizes (checked on every rank, so a mismatch fails all of them,
   * naming both, before a byte is copied) and the start of its outgoing bytes, each rank's
   * messages to its peers back to back in rank order; further rounds carry the rest, at most
   * {@code pieceBytes} per sender and round, until the longest sender is done. Every rank reads
   * every sender's piece and keeps its own part: the traffic grows with the square of the ranks,
   * fine for host meetings, not for a data path. Any segments will do (the bytes are copied out
   * during the call), and the send segments are free again once this returns.
   */
  @Override
  public synchronized void sendRecv(MemorySegment[] send, MemorySegment[] recv) {
    checkUsable();
    int ranks = size();
    int me = rank();
    long[] sendBytes = new long[ranks];
    long[] recvBytes = new long[ranks];
    String problem = null;
    if (send.length != ranks || recv.length != ranks) {
      problem = "rank " + me + ": sendRecv needs one send and one receive segment per rank (" + ranks + "), got "
          + send.length + " and " + recv.length;
    } else {
      for (int q = 0; q < ranks; q++) {
        sendBytes[q] = send[q] == null ? 0 : send[q].byteSize();
        recvBytes[q] = recv[q] == null ? 0 : recv[q].byteSize();
        if (recvBytes[q] > 0 && recv[q].isReadOnly()) {
          problem = "rank " + me + ": sendRecv's receive segment for rank " + q + " is read-only";
        }
        if (sendBytes[q] > 0 && !send[q].scope().isAlive() || recvBytes[q] > 0 && !recv[q].scope().isAlive()) {
          problem = "rank " + me + ": a sendRecv segment for rank " + q + " is no longer alive (its arena is closed)";
        }
      }
    }
    long outgoing = problem == null ? outgoing(sendBytes, me) : 0;
    byte[] first = null;
    if (problem == null) {
      int piece = piece(outgoing, 0);
      int header = headerBytes(ranks);
      first = new byte[header + piece];
      ByteBuffer b = ByteBuffer.wrap(first).order(ByteOrder.LITTLE_ENDIAN).putInt(OK);
      for (long n : sendBytes) b.putLong(n);
      for (long n : recvBytes) b.putLong(n);
      try {
        pack(send, sendBytes, me, 0, first, header, piece);
      } catch (RuntimeException e) { // a send segment this rank cannot read (its arena closed): fail everybody alike
        problem = "rank " + me + ": sendRecv cannot read its send segments: " + e;
      }
    }
    if (problem != null) first = refusal(problem);
    List<byte[]> got = exchange(first);

    long[][] sent = new long[ranks][];
    long[][] expected = new long[ranks][];
    for (int p = 0; p < ranks; p++) {
      String refused = refusal(got.get(p));
      if (refused != null) throw new CollectiveException(refused);
      ByteBuffer b = ByteBuffer.wrap(got.get(p), 4, got.get(p).length - 4).order(ByteOrder.LITTLE_ENDIAN);
      sent[p] = new long[ranks];
      expected[p] = new long[ranks];
      for (int q = 0; q < ranks; q++) sent[p][q] = b.getLong();
      for (int q = 0; q < ranks; q++) expected[p][q] = b.getLong();
    }
    for (int p = 0; p < ranks; p++) {
      for (int q = 0; q < ranks; q++) {
        if (sent[p][q] != expected[q][p]) {
          throw new CollectiveException("sendRecv: rank " + p + " sends rank " + q + " " + sent[p][q] + " bytes, rank " + q
              + " expects " + expected[q][p]);
        }
      }
    }
    // where this rank's message starts in each sender's outgoing bytes, and how many rounds the longest sender needs
    long[] at = new long[ranks];
    long[] total = new long[ranks];
    int rounds = 1;
    for (int p = 0; p < ranks; p++) {
      total[p] = outgoing(sent[p], p);
      for (int q = 0; q < me; q++) if (q != p) at[p] += sent[p][q];
      rounds = (int) Math.max(rounds, (total[p] + pieceBytes - 1) / pieceBytes);
    }
    if (recvBytes[me] > 0) MemorySegment.copy(send[me], 0, recv[me], 0, recvBytes[me]);
    for (int round = 0; round < rounds; round++) {
      if (round > 0) {
        int piece = piece(outgoing, round);
        byte[] mine = new byte[piece];
        pack(send, sendBytes, me, (long) round * pieceBytes, mine, 0, piece);
        got = exchange(mine);
      }
      int skip = round == 0 ? headerBytes(ranks) : 0;
      for (int p = 0; p < ranks; p++) {
        int piece = piece(total[p], round);
        byte[] b = got.get(p);
        if (b.length != skip + piece) {
          throw new CollectiveException("rank " + me + ": rank " + p + "'s sendRecv round " + round + " holds " + b.length
              + " bytes, its sizes say " + (skip + piece));
        }
        if (p == me) continue;
        long from = Math.max(at[p], (long) round * pieceBytes);
        long to = Math.min(at[p] + recvBytes[p], (long) round * pieceBytes + piece);
        if (to > from) {
          MemorySegment.copy(MemorySegment.ofArray(b), skip + from - (long) round * pieceBytes, recv[p], from - at[p], to - from);
        }
      }
    }
  }

  /** Bytes of round {@code round}'s piece of a sender with {@code total} outgoing bytes. */
  private int piece(long total, int round) {
    return (int) Math.clamp(total - (long) round * pieceBytes, 0, pieceBytes);
  }

  /** What {@code rank} sends its peers (its own message stays home). */
  private static long outgoing(long[] sendBytes, int rank) {
    long n = 0;
    for (int q = 0; q < sendBytes.length; q++) if (q != rank) n += sendBytes[q];
    return n;
  }

  /** The status word, then every peer's send and receive size. */
  private static int headerBytes(int ranks) {
    return 4 + 16 * ranks;
  }

  /** Copies {@code n} bytes of this rank's outgoing stream from {@code from} into {@code dst} at {@code at}. */
  private static void pack(MemorySegment[] send, long[] sendBytes, int me, long from, byte[] dst, int at, int n) {
    MemorySegment to = MemorySegment.ofArray(dst);
    long start = 0;
    long end = from + n;
    for (int q = 0; q < send.length && start < end; q++) {
      if (q == me || sendBytes[q] == 0) continue;
      long lo = Math.max(start, from);
      long hi = Math.min(start + sendBytes[q], end);
      if (hi > lo) MemorySegment.copy(send[q], lo - start, to, at + lo - from, hi - lo);
      start += sendBytes[q];
    }
  }

  private static byte[] refusal(String why) {
    return EncodedGather.refusal(why);
  }

  /** A refusal's text, or null when {@code blob} is a message. */
  private static String refusal(byte[] blob) {
    return EncodedGather.refused(blob);
  }

  private List<byte[]> exchange(byte[] blob) {
    try {
      return world.allGather(blob);
    } catch (RendezvousException e) {
      throw failed(e);
    }
  }

  /** The world's failure as this transport's (a timeout when it names ranks), recorded: every later call fails with it. */
  private CollectiveException failed(RendezvousException e) {
    CollectiveException f = e.asCollective(e.getMessage());
    failure.compareAndSet(null, f);
    return f;
  }

  /**
   * Without waiting: throws what the next collective would once the world failed, as far as this
   * rank can tell: this rank's own abort or an earlier failure, or a failure the store pushed (a
   * rank's connection dropped: a {@link CollectiveTimeoutException} naming it; an abort of another
   * rank; a round's timeout), or a store that is gone (rank 0 died: a timeout naming rank 0; see
   * {@link ProcessWorld#checkPeers}). Not held up by a collective running on another thread.
   */
  @Override
  public void checkPeers() {
    checkUsable();
    try {
      world.checkPeers();
    } catch (RendezvousException e) {
      throw failed(e);
    }
  }

  private void checkUsable() {
    if (closed) throw new CollectiveException("rank " + rank() + ": the transport is closed");
    CollectiveException f = failure.get();
    if (f == null) return;
    if (f instanceof CollectiveTimeoutException t) throw timeout(t.getMessage(), t.missingRanks(), t);
    throw new CollectiveException(f.getMessage(), f);
  }

  private static CollectiveTimeoutException timeout(String message, List<Integer> missing, Throwable cause) {
    CollectiveTimeoutException e = new CollectiveTimeoutException(message, missing);
    e.initCause(cause);
    return e;
  }

  /**
   * Fails every rank's current and later collectives through the store, this rank's at once:
   * "world aborted by rank r: {@code cause}". Callable from any thread.
   */
  @Override
  public void abort(Throwable cause) {
    String why = Wire.reason(CollectiveException.describe(cause));
    failure.compareAndSet(null, new CollectiveException("rank " + rank() + ": world aborted by rank " + rank() + ": " + why, cause));
    world.abort(why);
  }

  /** Leaves the world (rank 0 waits, bounded, for the others' goodbyes before its store goes). */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    world.close();
  }

  /** Messages between machines cannot name memory: a codec that writes a segment fails here. */
  private record NoSegments(int rank) implements SegmentTable {
    @Override
    public void describe(MemorySegment segment, MessageWriter out) {
      throw new IllegalArgumentException("a message names a segment of " + segment.byteSize() + " bytes, but StoreTransport "
          + "has no shared memory (its ranks may be on different machines); send the bytes with sendRecv");
    }

    @Override
    public MemorySegment resolve(MessageReader in) {
      throw new IllegalStateException("rank " + rank + ": rank " + in.from() + "'s message names a segment, which "
          + "StoreTransport cannot carry");
    }
  }
}
