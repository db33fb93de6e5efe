package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Direct TCP connections between this rank and its peers, the byte path of
 * {@link ClusterTransport#sendRecv}: one listening socket, bound to the interface that reaches
 * rank 0's store, one connection per linked pair (the lower rank connects, and opens with a hello
 * naming itself and the job, so that a stray connection is refused), and one selector over them,
 * so that a rank writes to and reads from all its peers at once. Sizes are agreed before a round
 * ({@link ClusterTransport#sendRecv}), so the streams carry raw bytes, one round after another.
 *
 * <p>{@link #connect} is a collective (its all-gathers go through {@code gather}); every wait is
 * bounded by the timeout, and is cut into short slices between which {@code checkWorld} runs, so
 * that an abort or a failure elsewhere in the world ends it promptly. A connection that ends
 * during a round names its peer at once. A failure of the links is final.
 *
 * <p>Owns its listening socket, its connections, its selector and its staging buffers.
 */
final class PeerLinks implements AutoCloseable {
  /** Longest single wait on the selector or the listener before the world is checked again. */
  private static final long SLICE_MILLIS = 2;
  /** How often a long wait asks the world (the store probe costs up to a millisecond). */
  private static final long CHECK_NANOS = 5_000_000L;
  /** After a peer's connection ends, how long to look for the world's own news of it (an abort, a leave) first. */
  private static final long END_GRACE_NANOS = 50_000_000L;
  /** A ByteBuffer covers at most this much of a native segment at once. */
  private static final long CHUNK = 1 << 30;
  /**
   * A heap segment travels through a direct staging buffer of this size per peer and way: NIO
   * cannot view a heap segment over any array but byte[] as a ByteBuffer, and one over byte[]
   * it copies, on every write, whole into a temporary direct buffer of the remaining size (so a
   * large message is copied again on each partial write, and the temporary buffer, as large as
   * the message, stays cached by the thread).
   */
  private static final int STAGE = 256 << 10;
  private static final int HELLO_BYTES = 12;
  /**
   * Share of the timeout this rank's connects may take, all of them: its peers wait for their
   * verdict in a gather that names a late rank at {@link ClusterTransport#MACHINE_WAIT} of the
   * timeout, so a connect that never answers (a firewall dropping it) must be given up, and named
   * with its address, before that.
   */
  static final double CONNECT_SHARE = 1.0 / 3;
  /**
   * Share of the timeout a round waits for a silent peer (nothing moved on any link): a peer of
   * this rank's machine waiting for this rank in the next collective names this rank at
   * {@link ClusterTransport#MACHINE_WAIT} of the timeout, although this rank is only waiting for
   * the silent peer on another machine; so this rank must name that peer first.
   */
  static final double SILENCE_SHARE = 1.0 / 2;

  private final int rank;
  private final int size;
  private final long token;
  private final long timeoutNanos;
  private final Runnable checkWorld;
  private final SocketChannel[] channels;
  private final SelectionKey[] keys;
  /** The pairs connected ([p][q], p &lt; q), the same on every rank. */
  private final boolean[][] joined;
  private ServerSocketChannel listener;
  private InetSocketAddress[] addresses;
  private Selector selector;
  private String broken;
  private boolean closed;

  // one round's progress per peer; reused across rounds
  private final MemorySegment[] outSeg;
  private final MemorySegment[] inSeg;
  private final long[] outAt;
  private final long[] inAt;
  private final ByteBuffer[] outBuf;
  private final ByteBuffer[] inBuf;
  /** Whether this round's message to / from each peer goes through its staging buffer (a heap segment). */
  private final boolean[] outStaged;
  private final boolean[] inStaged;
  /** Per peer, allocated at its first heap message, from {@link #stageArena}. */
  private final ByteBuffer[] outStage;
  private final ByteBuffer[] inStage;
  /** The same staging memory as segments. */
  private final MemorySegment[] outStageSeg;
  private final MemorySegment[] inStageSeg;
  private Arena stageArena;

  /**
   * The links of {@code rank} in a world of {@code size}; {@code token} names the job in every
   * hello; {@code checkWorld} throws the world's failure, if any, without waiting.
   */
  PeerLinks(int rank, int size, long token, long timeoutNanos, Runnable checkWorld) {
    this.rank = rank;
    this.size = size;
    this.token = token;
    this.timeoutNanos = timeoutNanos;
    this.checkWorld = checkWorld;
    this.channels = new SocketChannel[size];
    this.keys = new SelectionKey[size];
    this.joined = new boolean[size][size];
    this.outSeg = new MemorySegment[size];
    this.inSeg = new MemorySegment[size];
    this.outAt = new long[size];
    this.inAt = new long[size];
    this.outBuf = new ByteBuffer[size];
    this.inBuf = new ByteBuffer[size];
    this.outStaged = new boolean[size];
    this.inStaged = new boolean[size];
    this.outStage = new ByteBuffer[size];
    this.inStage = new ByteBuffer[size];
    this.outStageSeg = new MemorySegment[size];
    this.inStageSeg = new MemorySegment[size];
  }

  /** True when every pair {@code want} names is connected (as every rank sees it: {@link #connect} is a collective). */
  boolean covers(boolean[][] want) {
    for (int p = 0; p < size; p++) {
      for (int q = p + 1; q < size; q++) if (want[p][q] && !joined[p][q]) return false;
    }
    return true;
  }

  /**
   * Connects every pair {@code want} names ({@code want[p][q]}, p &lt; q, alike on every rank)
   * that has no connection yet. A collective: every rank calls it with the same pairs, and its
   * all-gathers go through {@code gather} (every rank's plain value, by rank). The first call
   * opens the listening socket on {@code bindTo} and publishes every rank's address. A rank that
   * cannot listen, connect or be reached fails every rank with one message naming it and the
   * address; the links are unusable after that.
   */
  void connect(boolean[][] want, InetAddress bindTo, Function<Object, Object[]> gather) {
    if (broken != null) throw new CollectiveException(broken);
    String problem = null;
    if (listener == null) {
      try {
        selector = Selector.open();
        listener = ServerSocketChannel.open();
        listener.bind(new InetSocketAddress(bindTo, 0), size);
        listener.configureBlocking(false);
      } catch (IOException e) {
        problem = "rank " + rank + " cannot listen for its peers' links on " + bindTo.getHostAddress() + ": " + e;
      }
      InetSocketAddress mine = problem == null ? (InetSocketAddress) localAddressOf(listener) : null;
      Object[] all = gather.apply(problem != null ? "!" + problem : mine.getAddress().getHostAddress() + " " + mine.getPort());
      addresses = new InetSocketAddress[size];
      for (int p = 0; p < size; p++) {
        String s = (String) all[p];
        if (s.startsWith("!")) fail(s.substring(1));
      }
      for (int p = 0; p < size; p++) {
        String s = (String) all[p];
        int cut = s.lastIndexOf(' ');
        try {
          addresses[p] = new InetSocketAddress(InetAddress.getByName(s.substring(0, cut)), Integer.parseInt(s.substring(cut + 1)));
        } catch (UnknownHostException e) {
          fail("rank " + rank + " cannot read rank " + p + "'s link address " + s + ": " + e);
        }
      }
      // every rank reads the same addresses, so every rank fails alike, before a connect that
      // could only fail (refused, or lost at a third of the timeout) names the address alone
      List<Integer> loopback = new ArrayList<>();
      List<Integer> others = new ArrayList<>();
      for (int p = 0; p < size; p++) (addresses[p].getAddress().isLoopbackAddress() ? loopback : others).add(p);
      if (!loopback.isEmpty() && !others.isEmpty()) {
        fail("rank(s) " + loopback + " listen for their links on a loopback address ("
            + addresses[loopback.get(0)].getAddress().getHostAddress() + "), which rank(s) " + others
            + " cannot reach from another machine: on their machine MASTER_ADDR resolves to a loopback address (localhost, "
            + "or a host name that /etc/hosts maps to 127.0.1.1); set MASTER_ADDR to an address of rank 0's machine that "
            + "every machine reaches");
      }
    }
    // the lower rank connects: its connection waits in the higher one's backlog until accepted
    long connectDeadline = System.nanoTime() + (long) (timeoutNanos * CONNECT_SHARE);
    for (int q = rank + 1; q < size && problem == null; q++) {
      if (!want[rank][q] || joined[rank][q]) continue;
      SocketChannel c = null;
      try {
        c = SocketChannel.open();
        c.setOption(StandardSocketOptions.TCP_NODELAY, true);
        c.configureBlocking(false);
        if (!c.connect(addresses[q])) awaitConnect(c, connectDeadline);
        // a fresh connection's send buffer takes the hello whole
        ByteBuffer hello = ByteBuffer.allocate(HELLO_BYTES).order(ByteOrder.LITTLE_ENDIAN).putLong(token).putInt(rank).flip();
        while (hello.hasRemaining()) c.write(hello);
        channels[q] = c;
      } catch (CollectiveException e) { // the world's failure, seen while a connect waited: it passes as it is
        closeQuietly(c);
        broken = e.getMessage();
        throw e;
      } catch (IOException | RuntimeException e) {
        closeQuietly(c);
        problem = "rank " + rank + " could not connect its link to rank " + q + " at " + addresses[q].getAddress().getHostAddress()
            + ":" + addresses[q].getPort() + ": " + e;
      }
    }
    agree(gather, problem);
    List<Integer> expected = new ArrayList<>();
    for (int p = 0; p < rank; p++) if (want[p][rank] && !joined[p][rank]) expected.add(p);
    agree(gather, accept(expected));
    try {
      for (int p = 0; p < size; p++) {
        if (channels[p] == null || keys[p] != null) continue;
        channels[p].configureBlocking(false);
        keys[p] = channels[p].register(selector, 0, p);
      }
    } catch (IOException e) {
      fail("rank " + rank + " cannot watch its links: " + e);
    }
    for (int p = 0; p < size; p++) {
      for (int q = p + 1; q < size; q++) joined[p][q] |= want[p][q];
    }
  }

  /**
   * Waits for {@code c}'s connect until {@code deadline}, in slices between which the world is
   * checked: a connect nobody answers must not keep this rank from an abort elsewhere for a third
   * of the timeout.
   */
  private void awaitConnect(SocketChannel c, long deadline) throws IOException {
    try (Selector waiting = Selector.open()) {
      c.register(waiting, SelectionKey.OP_CONNECT);
      long nextCheck = System.nanoTime() + CHECK_NANOS;
      while (!c.finishConnect()) {
        long now = System.nanoTime();
        if (now - deadline >= 0) {
          throw new java.net.SocketTimeoutException("its connects took " + (long) (timeoutNanos * CONNECT_SHARE) / 1_000_000 + " ms");
        }
        if (Thread.currentThread().isInterrupted()) throw new java.nio.channels.ClosedByInterruptException();
        if (now - nextCheck >= 0) {
          checkWorld.run();
          nextCheck = now + CHECK_NANOS;
        }
        waiting.select(SLICE_MILLIS);
        waiting.selectedKeys().clear();
      }
    }
  }

  private static java.net.SocketAddress localAddressOf(ServerSocketChannel s) {
    try {
      return s.getLocalAddress();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * Accepts the connections of {@code expected} peers (their hellos checked), or says why not.
   * Hellos are read from every accepted connection at once: a stray that says nothing (a port
   * scanner, a health check) must not keep the peers' connections behind it waiting for the
   * timeout.
   */
  private String accept(List<Integer> expected) {
    long deadline = System.nanoTime() + timeoutNanos;
    List<Integer> left = new ArrayList<>(expected);
    List<SocketChannel> unnamed = new ArrayList<>();
    List<ByteBuffer> hellos = new ArrayList<>();
    try {
      while (!left.isEmpty()) {
        boolean moved = false;
        SocketChannel c = listener.accept();
        if (c != null) {
          c.configureBlocking(false);
          unnamed.add(c);
          hellos.add(ByteBuffer.allocate(HELLO_BYTES).order(ByteOrder.LITTLE_ENDIAN));
          moved = true;
        }
        for (int i = unnamed.size() - 1; i >= 0 && !left.isEmpty(); i--) {
          SocketChannel u = unnamed.get(i);
          ByteBuffer hello = hellos.get(i);
          int got;
          try {
            got = u.read(hello);
          } catch (IOException e) {
            got = -1; // a stray that reset its connection
          }
          if (got == 0 || got > 0 && hello.hasRemaining()) {
            moved |= got > 0;
            continue;
          }
          moved = true;
          unnamed.remove(i);
          hellos.remove(i);
          Integer from = hello.hasRemaining() ? null : hello.flip().getLong() == token ? hello.getInt() : null;
          if (from == null || !left.remove(from)) { // a stray connection, not one of this job's expected peers
            closeQuietly(u);
            continue;
          }
          u.setOption(StandardSocketOptions.TCP_NODELAY, true);
          channels[from] = u;
        }
        if (left.isEmpty()) break;
        if (System.nanoTime() - deadline > 0) {
          return "rank " + rank + " got no link from rank(s) " + left + " within " + timeoutNanos / 1_000_000 + " ms (it listens on "
              + addresses[rank].getAddress().getHostAddress() + ":" + addresses[rank].getPort() + ")";
        }
        if (!moved) Thread.sleep(1);
      }
      return null;
    } catch (IOException e) {
      return "rank " + rank + " cannot accept its peers' links: " + e;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "rank " + rank + " was interrupted while accepting its peers' links";
    } finally {
      for (SocketChannel u : unnamed) closeQuietly(u); // strays still silent
    }
  }

  /** Fails every rank with the first rank's problem, if any rank has one; the links are broken then. */
  private void agree(Function<Object, Object[]> gather, String problem) {
    for (Object o : gather.apply(problem)) if (o != null) fail((String) o);
  }

  private void fail(String why) {
    broken = why;
    throw new CollectiveException(why);
  }

  /**
   * One round: writes {@code send[q]} to every linked peer q and reads {@code recv[p]} from every
   * linked peer p, all at once (a null or empty segment: nothing that way; only peers marked in
   * {@code linked} take part). Returns when every byte is written and read. A peer from which
   * nothing moves within {@link #SILENCE_SHARE} of the timeout is named
   * ({@link CollectiveTimeoutException}), as is one
   * whose connection ends; the world's failure, read between slices, ends the wait as it is, and
   * so does an interrupt of the thread (its status kept).
   */
  void exchange(MemorySegment[] send, MemorySegment[] recv, boolean[] linked) {
    if (broken != null) throw new CollectiveException(broken);
    int pending = 0;
    try {
      for (int p = 0; p < size; p++) {
        outSeg[p] = inSeg[p] = null;
        outBuf[p] = inBuf[p] = null;
        if (!linked[p] || p == rank) continue;
        int ops = 0;
        if (send[p] != null && send[p].byteSize() > 0) {
          outSeg[p] = send[p];
          outAt[p] = 0;
          outStaged[p] = !send[p].isNative();
          if (outStaged[p] && outStage[p] == null) outStage[p] = (outStageSeg[p] = stage()).asByteBuffer();
          ops |= SelectionKey.OP_WRITE;
          pending++;
        }
        if (recv[p] != null && recv[p].byteSize() > 0) {
          inSeg[p] = recv[p];
          inAt[p] = 0;
          inStaged[p] = !recv[p].isNative();
          if (inStaged[p] && inStage[p] == null) inStage[p] = (inStageSeg[p] = stage()).asByteBuffer();
          ops |= SelectionKey.OP_READ;
          pending++;
        }
        keys[p].interestOps(ops);
      }
      long lastMove = System.nanoTime();
      long nextCheck = lastMove + CHECK_NANOS;
      while (pending > 0) {
        // the selector returns at once for an interrupted thread: waiting on would spin a core until the timeout
        if (Thread.currentThread().isInterrupted()) {
          broken = "rank " + rank + " was interrupted during sendRecv";
          throw new CollectiveException(broken);
        }
        if (selector.select(SLICE_MILLIS) > 0) {
          for (SelectionKey k : selector.selectedKeys()) {
            int p = (Integer) k.attachment();
            if (k.isValid() && k.isWritable() && outSeg[p] != null && write(p)) {
              pending--;
              k.interestOps(k.interestOps() & ~SelectionKey.OP_WRITE);
            }
            if (k.isValid() && k.isReadable() && inSeg[p] != null && read(p)) {
              pending--;
              k.interestOps(k.interestOps() & ~SelectionKey.OP_READ);
            }
          }
          selector.selectedKeys().clear();
          lastMove = System.nanoTime();
        }
        long now = System.nanoTime();
        if (now - nextCheck >= 0) {
          checkWorld.run();
          nextCheck = now + CHECK_NANOS;
        }
        if (pending > 0 && now - lastMove > (long) (timeoutNanos * SILENCE_SHARE)) throw stalled();
      }
    } catch (IOException e) {
      // the selector itself failed, not a peer's connection (those are named in read/write)
      broken = "rank " + rank + ": its links failed: " + e;
      throw new CollectiveException(broken, e);
    } finally {
      for (int p = 0; p < size; p++) {
        outSeg[p] = inSeg[p] = null;
        outBuf[p] = inBuf[p] = null;
      }
    }
  }

  private MemorySegment stage() {
    if (stageArena == null) stageArena = Arena.ofShared();
    return stageArena.allocate(STAGE, 64);
  }

  /** Writes what {@code p}'s connection takes now; true once all of {@code outSeg[p]} is written. */
  private boolean write(int p) {
    MemorySegment s = outSeg[p];
    try {
      while (true) {
        if (outBuf[p] == null || !outBuf[p].hasRemaining()) {
          if (outAt[p] == s.byteSize()) break;
          if (outStaged[p]) {
            int n = (int) Math.min(STAGE, s.byteSize() - outAt[p]);
            MemorySegment.copy(s, outAt[p], outStageSeg[p], 0, n);
            outBuf[p] = outStage[p].clear().limit(n);
            outAt[p] += n;
          } else {
            long n = Math.min(CHUNK, s.byteSize() - outAt[p]);
            outBuf[p] = s.asSlice(outAt[p], n).asByteBuffer();
            outAt[p] += n;
          }
        }
        if (channels[p].write(outBuf[p]) == 0) return false;
      }
    } catch (IOException e) {
      throw ended(p, e);
    }
    outSeg[p] = null;
    return true;
  }

  /** Reads what {@code p}'s connection holds now; true once all of {@code inSeg[p]} is read. */
  private boolean read(int p) {
    MemorySegment s = inSeg[p];
    try {
      while (true) {
        if (inBuf[p] != null && !inBuf[p].hasRemaining()) {
          int n = inBuf[p].limit();
          if (inStaged[p]) MemorySegment.copy(inStageSeg[p], 0, s, inAt[p] - n, n);
          inBuf[p] = null;
        }
        if (inBuf[p] == null) {
          if (inAt[p] == s.byteSize()) break;
          if (inStaged[p]) {
            int n = (int) Math.min(STAGE, s.byteSize() - inAt[p]);
            inBuf[p] = inStage[p].clear().limit(n);
            inAt[p] += n;
          } else {
            long n = Math.min(CHUNK, s.byteSize() - inAt[p]);
            inBuf[p] = s.asSlice(inAt[p], n).asByteBuffer();
            inAt[p] += n;
          }
        }
        int got = channels[p].read(inBuf[p]);
        if (got < 0) throw ended(p, null);
        if (got == 0) return false;
      }
    } catch (IOException e) {
      throw ended(p, e);
    }
    inSeg[p] = null;
    return true;
  }

  /**
   * Peer {@code p}'s connection ended mid-round: its process died, or it left the world. The
   * world's own news comes first when it arrives within a moment (an abort that made it leave);
   * otherwise {@code p} is named.
   */
  private CollectiveException ended(int p, IOException e) {
    broken = "rank " + rank + ": rank " + p + "'s link ended during sendRecv (" + (e == null ? "end of stream" : e.toString())
        + "): its process died or it left the world";
    long until = System.nanoTime() + END_GRACE_NANOS;
    while (System.nanoTime() - until < 0) {
      checkWorld.run();
      try {
        Thread.sleep(5);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    CollectiveTimeoutException t = new CollectiveTimeoutException(broken, List.of(p));
    if (e != null) t.initCause(e);
    return t;
  }

  /** Names the peers this rank still waits to hear from (or, having heard all, those it cannot write to). */
  private CollectiveTimeoutException stalled() {
    List<Integer> silent = new ArrayList<>();
    for (int p = 0; p < size; p++) if (inSeg[p] != null) silent.add(p);
    String what = "sent nothing";
    if (silent.isEmpty()) {
      for (int p = 0; p < size; p++) if (outSeg[p] != null) silent.add(p);
      what = "read nothing";
    }
    broken = "rank(s) " + silent + " " + what + " on their links to rank " + rank + " within "
        + (long) (timeoutNanos * SILENCE_SHARE) / 1_000_000 + " ms (sendRecv)";
    return new CollectiveTimeoutException(broken, silent);
  }

  /** Closes every connection, the listener and the selector. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    for (int p = 0; p < size; p++) closeQuietly(channels[p]);
    closeQuietly(listener);
    closeQuietly(selector);
    if (stageArena != null) stageArena.close();
  }

  private static void closeQuietly(AutoCloseable c) {
    if (c == null) return;
    try {
      c.close();
    } catch (Exception ignored) {
      // Closing is all that is left to do with it.
    }
  }
}
