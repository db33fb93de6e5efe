package io.moeyard.engine.rendezvous;

import io.moeyard.engine.Topology;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * This process's membership of a world of processes: joined through rank 0's store, with the
 * configuration checked across ranks, and able to all-gather byte blobs. SPMD like
 * {@link io.moeyard.engine.transport.Transport}: every rank calls the same collectives in the same
 * order. Rank 0 also owns the store, so it should close last; {@link #close} makes it wait for
 * the others' goodbyes (bounded by the timeout).
 *
 * <p>Owns its socket to the store and, on rank 0, the store itself.
 */
public final class ProcessWorld implements AutoCloseable {
  /** The default wait for the slowest rank, at join and at every collective. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);

  /** The largest blob a collective carries; a transport refuses a larger message on every rank alike. */
  public static final int MAX_BLOB = Wire.MAX_BLOB;

  /**
   * Beyond the store's own deadline: the store answers "rank r is missing" at its deadline, and a
   * rank only gives up on the store itself (dead or unreachable) a little after that.
   */
  private static final long GRACE_MILLIS = 2_000;
  private static final long CONNECT_RETRY_MILLIS = 50;

  private final RankEnv env;
  private final StoreServer store;
  private final Socket socket;
  private final DataInputStream in;
  private final DataOutputStream out;
  private final String where;
  /** Held while a request is written: an abort may come from another thread during a collective. */
  private final Object sending = new Object();
  /**
   * Held by a collective (and by close) for its request and answer; {@link #checkPeers} only tries
   * it, so that it never waits for a collective of another thread, which reads any failure itself.
   */
  private final ReentrantLock exchanging = new ReentrantLock();
  private long round = 1;
  /** Each subset's next round ({@link #allGatherAmong}), by its members. */
  private final Map<List<Integer>, Long> subsetRounds = new HashMap<>();
  private final long timeoutMillis;
  private volatile boolean closed;
  /** The world's failure once this rank learnt it (a collective's or checkPeers' read): final. */
  private volatile RendezvousException failure;

  private ProcessWorld(RankEnv env, StoreServer store, Socket socket, String where, long timeoutMillis) throws IOException {
    this.env = env;
    this.timeoutMillis = timeoutMillis;
    this.store = store;
    this.socket = socket;
    this.where = where;
    this.in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
    this.out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
  }

  /** Joins with the environment's place and the default timeout. */
  public static ProcessWorld join(Map<String, String> config) {
    return join(RankEnv.fromEnv(), config, DEFAULT_TIMEOUT);
  }

  /**
   * Joins the world: rank 0 starts the store, every rank connects and registers {@code config}.
   * Returns once every rank has joined and every configuration equals rank 0's.
   *
   * @throws RendezvousException when the store cannot be served or reached, a rank does not join
   *     within {@code timeout} (named), or ranks disagree (each difference named)
   */
  public static ProcessWorld join(RankEnv env, Map<String, String> config, Duration timeout) {
    if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive, got " + timeout);
    long timeoutNanos = timeout.toNanos();
    StoreServer store = env.rank() == 0 ? StoreServer.start(env.masterPort(), env.worldSize(), timeoutNanos) : null;
    String where = "the store at " + env.masterAddr() + ":" + env.masterPort() + " (MASTER_ADDR:MASTER_PORT, served by rank 0)";
    Socket socket = null;
    ProcessWorld world = null;
    try {
      socket = connect(env, where, timeoutNanos);
      socket.setSoTimeout((int) Math.min(Integer.MAX_VALUE, timeout.toMillis() + GRACE_MILLIS));
      world = new ProcessWorld(env, store, socket, where, timeout.toMillis());
      world.out.writeInt(Wire.JOIN);
      world.out.writeInt(env.rank());
      world.out.writeInt(env.worldSize());
      world.out.writeInt(env.localWorldSize());
      Wire.writeMap(world.out, config);
      world.out.flush();
      int tag = world.in.readInt();
      if (tag == Wire.FAILED) throw world.failed();
      if (tag != Wire.JOINED) throw new IOException("unexpected answer " + tag);
      return world;
    } catch (IOException e) {
      RendezvousException re = world == null ? new RendezvousException("rank " + env.rank() + " lost " + where + ": " + e, e)
          : world.lost(e);
      cleanUp(socket, store);
      throw re;
    } catch (RuntimeException e) {
      cleanUp(socket, store);
      throw e;
    }
  }

  private static void cleanUp(Socket socket, StoreServer store) {
    if (socket != null) {
      try {
        socket.close();
      } catch (IOException ignored) {
        // Already failing; the original error is the one to report.
      }
    }
    if (store != null) store.close();
  }

  /** Retries until the deadline: rank 0 may start its store after the others start knocking. */
  private static Socket connect(RankEnv env, String where, long timeoutNanos) {
    long deadline = System.nanoTime() + timeoutNanos;
    IOException last = null;
    while (true) {
      Socket s = new Socket();
      try {
        s.setTcpNoDelay(true);
        long leftMillis = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
        s.connect(new InetSocketAddress(env.masterAddr(), env.masterPort()), (int) Math.min(leftMillis, Integer.MAX_VALUE));
        return s;
      } catch (UnknownHostException e) {
        closeQuietly(s);
        throw new RendezvousException("MASTER_ADDR=" + env.masterAddr() + " is not a known host", e);
      } catch (IllegalArgumentException e) {
        closeQuietly(s);
        throw new RendezvousException("cannot connect to " + where + ": " + e.getMessage(), e);
      } catch (ConnectException | NoRouteToHostException | SocketTimeoutException e) {
        closeQuietly(s);
        last = e;
      } catch (IOException e) {
        closeQuietly(s);
        throw new RendezvousException("rank " + env.rank() + " cannot connect to " + where + ": " + e, e);
      }
      if (deadline - System.nanoTime() <= 0) {
        throw new RendezvousException("rank " + env.rank() + " could not reach " + where + " within "
            + timeoutNanos / 1_000_000 + " ms (" + last.getMessage() + "); is rank 0 running?", List.of(0), last);
      }
      try {
        Thread.sleep(CONNECT_RETRY_MILLIS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        closeQuietly(s);
        throw new RendezvousException("rank " + env.rank() + " was interrupted while connecting to " + where, e);
      }
    }
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // Nothing was established.
    }
  }

  public int rank() {
    return env.rank();
  }

  public int size() {
    return env.worldSize();
  }

  public RankEnv env() {
    return env;
  }

  public Topology topology() {
    return env.topology();
  }

  /**
   * This end's address of the connection to rank 0's store: the address of the interface that
   * reaches the master, where this rank's peers on other machines can reach it too.
   */
  public java.net.InetAddress localAddress() {
    return socket.getLocalAddress();
  }

  /**
   * Every rank contributes {@code mine}; returns all contributions indexed by rank. Also a
   * barrier: no rank returns before every rank has called it.
   *
   * @throws RendezvousException naming the ranks that did not arrive in time or left; once the
   *     world failed, every later call throws that failure again (without asking the store, which
   *     may be gone by then)
   */
  public List<byte[]> allGather(byte[] mine) {
    exchanging.lock();
    try {
      if (closed) throw new IllegalStateException("rank " + rank() + "'s world is closed");
      if (mine.length > Wire.MAX_BLOB) {
        throw new IllegalArgumentException("blob of " + mine.length + " bytes exceeds the store's " + Wire.MAX_BLOB);
      }
      checkFailure();
      try {
        synchronized (sending) {
          out.writeInt(Wire.GATHER);
          out.writeLong(round);
          Wire.writeBlob(out, mine);
          out.flush();
        }
        int tag = in.readInt();
        if (tag == Wire.FAILED) throw remember(failed());
        if (tag != Wire.GATHERED) throw new IOException("unexpected answer " + tag);
        int n = in.readInt();
        if (n != size()) throw new IOException("answer for " + n + " ranks in a world of " + size());
        List<byte[]> all = new ArrayList<>(n);
        for (int r = 0; r < n; r++) all.add(Wire.readBlob(in));
        round++;
        return all;
      } catch (IOException e) {
        throw remember(lost(e));
      }
    } finally {
      exchanging.unlock();
    }
  }

  /**
   * An all-gather among {@code members} only (world ranks, ascending, this rank among them), for
   * meetings of a fixed few (the leaders of machines): every member contributes {@code mine};
   * returns the contributions in the order of {@code members}. Each subset has its own rounds,
   * apart from the world's and from other subsets', and its members call it in the same order.
   * The store fails the world naming the members that did not arrive within the timeout of the
   * round's first arrival; a caller whose members first wait for others of their own (a machine's
   * ranks) bounds that wait by less, so that the member's own finding fails the world first. Other ranks are not held up; they read a failure it causes at their
   * next collective or {@link #checkPeers}.
   *
   * @throws IllegalArgumentException when {@code members} is not ascending, out of range or lacks this rank
   * @throws RendezvousException as {@link #allGather} does
   */
  public List<byte[]> allGatherAmong(int[] members, byte[] mine) {
    int me = rank();
    if (members.length == 0 || Arrays.binarySearch(members, me) < 0 || members[0] < 0 || members[members.length - 1] >= size()) {
      throw new IllegalArgumentException("rank " + me + ": an all-gather among ranks " + Arrays.toString(members)
          + " must name ascending ranks of [0, " + size() + ") including this one");
    }
    for (int i = 1; i < members.length; i++) {
      if (members[i] <= members[i - 1]) throw new IllegalArgumentException("rank " + me + ": ranks " + Arrays.toString(members) + " are not ascending");
    }
    exchanging.lock();
    try {
      if (closed) throw new IllegalStateException("rank " + me + "'s world is closed");
      if (mine.length > Wire.MAX_BLOB) {
        throw new IllegalArgumentException("blob of " + mine.length + " bytes exceeds the store's " + Wire.MAX_BLOB);
      }
      checkFailure();
      List<Integer> key = Arrays.stream(members).boxed().toList();
      long r = subsetRounds.getOrDefault(key, 1L);
      int soTimeout = -1;
      try {
        soTimeout = socket.getSoTimeout();
        socket.setSoTimeout((int) Math.min(Integer.MAX_VALUE, (long) (timeoutMillis * StoreServer.SUBSET_WAIT) + GRACE_MILLIS));
        synchronized (sending) {
          out.writeInt(Wire.GATHER_AMONG);
          out.writeLong(r);
          Wire.writeRanks(out, members);
          Wire.writeBlob(out, mine);
          out.flush();
        }
        int tag = in.readInt();
        if (tag == Wire.FAILED) throw remember(failed());
        if (tag != Wire.GATHERED) throw new IOException("unexpected answer " + tag);
        int n = in.readInt();
        if (n != members.length) throw new IOException("answer for " + n + " ranks to an all-gather among " + members.length);
        List<byte[]> all = new ArrayList<>(n);
        for (int i = 0; i < n; i++) all.add(Wire.readBlob(in));
        subsetRounds.put(key, r + 1);
        return all;
      } catch (IOException e) {
        throw remember(lost(e));
      } finally {
        if (soTimeout >= 0) {
          try {
            socket.setSoTimeout(soTimeout);
          } catch (IOException ignored) {
            // The socket is broken; the next read says so.
          }
        }
      }
    } finally {
      exchanging.unlock();
    }
  }

  /**
   * Fails the world for every rank at once with this rank's own finding: the store answers every
   * rank's current and next collective with {@code why}, naming {@code missing} (a timeout of a
   * wait outside the store, a peer found dead), as its own timeouts do. Callable from any thread,
   * like {@link #abort}; the first failure of the world wins. Quiet when the store is gone.
   */
  public void fail(String why, List<Integer> missing) {
    synchronized (sending) {
      if (closed) return;
      try {
        out.writeInt(Wire.FAIL);
        out.writeUTF(Wire.reason(why));
        Wire.writeRanks(out, missing.stream().mapToInt(Integer::intValue).toArray());
        out.flush();
      } catch (IOException ignored) {
        // The store is gone: every rank learns that from its own connection.
      }
    }
  }

  /**
   * Without waiting: throws what the next {@link #allGather} would when the world failed and this
   * rank can tell. The store pushes its failure (a rank whose connection dropped, an abort, a
   * timeout) to every rank at once, where it waits unread until the next collective; this reads it
   * if it has arrived. A store that is gone (rank 0 died) has nothing to read, only an end: with
   * nothing waiting, this reads for at most {@link #PROBE_MILLIS} to find it, and names rank 0.
   * Returns at once while a collective runs on another thread: that collective reads the failure
   * itself, and later checks throw it.
   *
   * @throws RendezvousException the world's failure, as {@link #allGather} throws it
   * @throws IllegalStateException when this rank's world is closed
   */
  public void checkPeers() {
    if (!exchanging.tryLock()) {
      checkFailure();
      return;
    }
    try {
      if (closed) throw new IllegalStateException("rank " + rank() + "'s world is closed");
      checkFailure();
      try {
        if (in.available() <= 0 && !endOrByte()) return;
        // between collectives only a failure can be on its way: every other answer is read by its request
        int tag = in.readInt();
        if (tag == Wire.FAILED) throw remember(failed());
        throw remember(new RendezvousException("rank " + rank() + ": " + where + " sent message " + tag
            + " outside a collective (a protocol error: only a failure may come unasked)"));
      } catch (IOException e) {
        throw remember(lost(e));
      }
    } finally {
      exchanging.unlock();
    }
  }

  /** How long {@link #checkPeers} reads, with nothing waiting, to find a store that is gone. */
  static final int PROBE_MILLIS = 1;

  /**
   * With nothing buffered: whether a byte arrives within {@link #PROBE_MILLIS} (left unread for
   * the caller); the connection's end throws EOFException. Holds {@link #exchanging}.
   */
  private boolean endOrByte() throws IOException {
    int timeout = socket.getSoTimeout();
    in.mark(1);
    try {
      socket.setSoTimeout(PROBE_MILLIS);
      if (in.read() < 0) throw new EOFException("the store closed the connection");
      in.reset();
      return true;
    } catch (SocketTimeoutException quiet) {
      return false;
    } finally {
      socket.setSoTimeout(timeout);
    }
  }

  private RendezvousException remember(RendezvousException e) {
    if (failure == null) failure = e;
    return e;
  }

  /** The remembered failure again, this call's stack with the first one's as its cause. */
  private void checkFailure() {
    RendezvousException f = failure;
    if (f != null) throw new RendezvousException(f.getMessage(), f.missingRanks(), f);
  }

  public void barrier() {
    allGather(new byte[0]);
  }

  /**
   * Fails the world for every rank at once: the store answers every rank's current and next
   * collective, this rank's included, with "world aborted by rank r: {@code why}". Callable from
   * any thread, also while this rank's own thread waits in a collective (which then fails with it).
   * Quiet when the store is gone already: the world failed then anyway.
   */
  public void abort(String why) {
    synchronized (sending) {
      if (closed) return;
      try {
        out.writeInt(Wire.ABORT);
        out.writeUTF(Wire.reason(why));
        out.flush();
      } catch (IOException ignored) {
        // The store is gone: every rank learns that from its own connection.
      }
    }
  }

  private RendezvousException failed() throws IOException {
    String why = in.readUTF();
    int n = in.readInt();
    List<Integer> missing = new ArrayList<>();
    for (int i = 0; i < n; i++) missing.add(in.readInt());
    return new RendezvousException("rank " + rank() + ": " + why, missing, null);
  }

  private RendezvousException lost(IOException e) {
    if (e instanceof SocketTimeoutException) {
      return new RendezvousException("rank " + rank() + ": no answer from " + where + " within "
          + socketTimeoutMillis() + " ms; rank 0 is stuck or gone", List.of(0), e);
    }
    String how = e instanceof EOFException ? "it closed the connection" : e.toString();
    return new RendezvousException("rank " + rank() + " lost " + where + ": " + how + "; rank 0 is gone", List.of(0), e);
  }

  private int socketTimeoutMillis() {
    try {
      return socket.getSoTimeout();
    } catch (IOException e) {
      return -1;
    }
  }

  /**
   * Closes the socket without a goodbye, as a crashed process would: for tests of the fault path.
   * Rank 0's store goes first, as it does with its process, so that it tells nobody of the drop.
   */
  void dropWithoutGoodbye() {
    closed = true;
    if (store != null) store.abandon();
    closeQuietly(socket);
  }

  /** Says goodbye (so the store does not take this rank for dead) and releases the socket and store. */
  @Override
  public void close() {
    exchanging.lock();
    try {
      if (closed) return;
      closed = true;
      synchronized (sending) {
        try {
          out.writeInt(Wire.BYE);
          out.flush();
        } catch (IOException ignored) {
          // The store is gone already; nobody is left to tell.
        }
      }
      closeQuietly(socket);
      if (store != null) store.close();
    } finally {
      exchanging.unlock();
    }
  }
}
