package io.moeyard.engine.rendezvous;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Rank 0's store: accepts one connection per rank, checks the joins agree, then runs all-gather
 * rounds. The store, not the ranks, owns the deadlines, because only it knows who is missing: a
 * round that is not complete within the timeout of its first arrival (the join: of the store's
 * start) fails every connected rank with a message naming the absent ones. A rank whose
 * connection drops without saying goodbye, or that aborts, fails the world at once.
 *
 * <p>Beside the world's rounds it runs all-gathers among fixed subsets of ranks (each subset its
 * own rounds, {@link Wire#GATHER_AMONG}), whose deadline is {@link #SUBSET_WAIT} times the
 * timeout, as the world's: the subset's members (the leaders of machines) first wait for their own
 * machine, whose ranks name a missing rank of theirs earlier (ClusterTransport's machines wait two
 * thirds of the timeout), so that the store names a member only when its whole machine is late.
 *
 * <p>Owns its server socket, the accepted sockets, the acceptor, one reader per connection and the
 * watchdog; {@link #close} ends them all.
 */
final class StoreServer implements AutoCloseable {
  private static final long WATCH_MILLIS = 20;
  /** A subset round's deadline, in timeouts: every failure is named within the timeout. */
  static final double SUBSET_WAIT = 1.0;

  private final ServerSocket server;
  private final int size;
  private final long timeoutNanos;
  private final Thread acceptor;
  private final Thread watchdog;
  private final List<Thread> readers = new ArrayList<>();
  private final List<Socket> sockets = new ArrayList<>();

  // Guarded by this.
  private final Peer[] peers;
  private final Map<String, String>[] configs;
  private final int[] localWorldSizes;
  private final byte[][] blobs;
  private final boolean[] arrived;
  private int arrivals;
  private long round;
  private long deadline;
  private boolean roundOpen;
  private String failure;
  private List<Integer> failedMissing = List.of();
  private boolean closed;
  private final Map<List<Integer>, Subset> subsets = new HashMap<>();

  @SuppressWarnings("unchecked")
  private StoreServer(ServerSocket server, int size, long timeoutNanos) {
    this.server = server;
    this.size = size;
    this.timeoutNanos = timeoutNanos;
    this.peers = new Peer[size];
    this.configs = new Map[size];
    this.localWorldSizes = new int[size];
    this.blobs = new byte[size][];
    this.arrived = new boolean[size];
    this.deadline = System.nanoTime() + timeoutNanos;
    this.roundOpen = true;
    this.acceptor = Thread.ofPlatform().daemon().name("moeyard-store-accept").unstarted(this::acceptLoop);
    this.watchdog = Thread.ofPlatform().daemon().name("moeyard-store-watchdog").unstarted(this::watchLoop);
  }

  static StoreServer start(int port, int size, long timeoutNanos) {
    ServerSocket s;
    try {
      s = new ServerSocket();
      s.setReuseAddress(true);
      try {
        s.bind(new InetSocketAddress(port), size * 2);
      } catch (IOException e) {
        s.close();
        throw e;
      }
    } catch (BindException e) {
      throw new RendezvousException("rank 0 cannot serve the store on MASTER_PORT=" + port
          + ": the port is in use (" + e.getMessage() + "); pick another (MASTER_PORT, or launch --master-port)", e);
    } catch (IOException e) {
      throw new RendezvousException("rank 0 cannot serve the store on MASTER_PORT=" + port + ": " + e, e);
    }
    StoreServer store = new StoreServer(s, size, timeoutNanos);
    store.acceptor.start();
    store.watchdog.start();
    return store;
  }

  private void acceptLoop() {
    while (true) {
      Socket s;
      try {
        s = server.accept();
      } catch (IOException e) {
        return; // closed
      }
      synchronized (this) {
        if (closed) {
          closeQuietly(s);
          return;
        }
        sockets.add(s);
        Thread t = Thread.ofPlatform().daemon().name("moeyard-store-conn").unstarted(() -> serve(s));
        readers.add(t);
        t.start();
      }
    }
  }

  private void serve(Socket s) {
    Peer peer = null;
    try {
      s.setTcpNoDelay(true);
      DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream()));
      DataOutputStream out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream()));
      if (in.readInt() != Wire.JOIN) {
        send(new Peer(-1, out), Wire.FAILED, "expected a join first");
        return;
      }
      int rank = in.readInt();
      int worldSize = in.readInt();
      int localWorldSize = in.readInt();
      Map<String, String> config = Wire.readMap(in);
      peer = new Peer(rank, out);
      if (!join(peer, worldSize, localWorldSize, config)) return;
      while (true) {
        int tag = in.readInt();
        if (tag == Wire.BYE) {
          peer.left = true;
          return;
        }
        if (tag == Wire.ABORT) {
          aborted(peer, in.readUTF());
          continue;
        }
        if (tag == Wire.FAIL) {
          String why = in.readUTF();
          failedBy(why, Arrays.stream(Wire.readRanks(in, size)).boxed().toList());
          continue;
        }
        if (tag == Wire.GATHER_AMONG) {
          long r = in.readLong();
          int[] members = Wire.readRanks(in, size);
          byte[] blob = Wire.readBlob(in);
          contributeAmong(peer, members, r, blob);
          continue;
        }
        if (tag != Wire.GATHER) throw new IOException("unknown message " + tag);
        long r = in.readLong();
        byte[] blob = Wire.readBlob(in);
        contribute(peer, r, blob);
      }
    } catch (IOException e) {
      if (peer != null && !peer.left) lost(peer, e);
    } finally {
      if (peer != null) peer.gone = true;
      closeQuietly(s);
    }
  }

  private synchronized boolean join(Peer peer, int worldSize, int localWorldSize, Map<String, String> config) {
    if (failure != null) {
      send(peer, Wire.FAILED, failure);
      return false;
    }
    int rank = peer.rank;
    if (worldSize != size) {
      fail("rank " + rank + " has WORLD_SIZE=" + worldSize + ", rank 0 has " + size, List.of());
      send(peer, Wire.FAILED, failure);
      return false;
    }
    if (rank < 0 || rank >= size) {
      fail("a process joined as rank " + rank + ", outside [0, " + size + ")", List.of());
      send(peer, Wire.FAILED, failure);
      return false;
    }
    if (peers[rank] != null) {
      fail("two processes joined as rank " + rank + " (RANK must be unique)", List.of());
      send(peer, Wire.FAILED, failure);
      return false;
    }
    peers[rank] = peer;
    configs[rank] = config;
    localWorldSizes[rank] = localWorldSize;
    arrived[rank] = true;
    if (++arrivals < size) return true;
    String disagreement = disagreement();
    if (disagreement != null) {
      fail(disagreement, List.of());
      return false;
    }
    nextRound();
    for (Peer p : peers) send(p, Wire.JOINED, null);
    return true;
  }

  /** Every difference from rank 0's announcement, rank by rank, or null when all agree. */
  private String disagreement() {
    List<String> diffs = new ArrayList<>();
    for (int r = 1; r < size; r++) {
      if (localWorldSizes[r] != localWorldSizes[0]) {
        diffs.add("rank " + r + " has LOCAL_WORLD_SIZE=" + localWorldSizes[r] + ", rank 0 has " + localWorldSizes[0]);
      }
      TreeSet<String> keys = new TreeSet<>(configs[0].keySet());
      keys.addAll(configs[r].keySet());
      for (String k : keys) {
        String mine = configs[r].get(k);
        String zero = configs[0].get(k);
        if (mine != null && mine.equals(zero)) continue;
        diffs.add("rank " + r + (mine == null ? " lacks " + k : " has " + k + "=" + mine)
            + ", rank 0 " + (zero == null ? "lacks " + k : "has " + k + "=" + zero));
      }
    }
    return diffs.isEmpty() ? null : "ranks disagree on the configuration: " + String.join("; ", diffs);
  }

  private synchronized void contribute(Peer peer, long r, byte[] blob) {
    if (failure != null) {
      send(peer, Wire.FAILED, failure);
      return;
    }
    if (r != round || arrived[peer.rank]) {
      fail("rank " + peer.rank + " sent round " + r + " while the world is in round " + round
          + " (ranks must call the same collectives in the same order)", List.of());
      return;
    }
    if (!roundOpen) {
      roundOpen = true;
      deadline = System.nanoTime() + timeoutNanos;
    }
    blobs[peer.rank] = blob;
    arrived[peer.rank] = true;
    if (++arrivals < size) return;
    for (Peer p : peers) sendBlobs(p, blobs);
    nextRound();
  }

  private void nextRound() {
    round++;
    arrivals = 0;
    roundOpen = false;
    Arrays.fill(arrived, false);
    Arrays.fill(blobs, null);
  }

  /** One rank's part in a round of the subset {@code members}; the subset's state is made at its first round. */
  private synchronized void contributeAmong(Peer peer, int[] members, long r, byte[] blob) {
    if (failure != null) {
      send(peer, Wire.FAILED, failure);
      return;
    }
    int at = Arrays.binarySearch(members, peer.rank);
    if (at < 0 || !ascending(members)) {
      fail("rank " + peer.rank + " sent an all-gather among ranks " + Arrays.toString(members)
          + " (they must be ascending and include the sender)", List.of());
      return;
    }
    Subset s = subsets.computeIfAbsent(Arrays.stream(members).boxed().toList(), k -> new Subset(members));
    if (r != s.round || s.arrived[at]) {
      fail("rank " + peer.rank + " sent round " + r + " of the all-gather among ranks " + Arrays.toString(members)
          + " while it is in round " + s.round + " (ranks must call the same collectives in the same order)", List.of());
      return;
    }
    if (!s.open) {
      s.open = true;
      s.deadline = System.nanoTime() + subsetTimeoutNanos();
    }
    s.blobs[at] = blob;
    s.arrived[at] = true;
    if (++s.arrivals < members.length) return;
    for (int m : members) sendBlobs(peers[m], s.blobs);
    s.round++;
    s.arrivals = 0;
    s.open = false;
    Arrays.fill(s.arrived, false);
    Arrays.fill(s.blobs, null);
  }

  private long subsetTimeoutNanos() {
    return (long) (timeoutNanos * SUBSET_WAIT);
  }

  private static boolean ascending(int[] ranks) {
    for (int i = 1; i < ranks.length; i++) if (ranks[i] <= ranks[i - 1]) return false;
    return true;
  }

  /** A rank's own finding (a timeout, a death) fails the world with its message and the ranks it names. */
  private synchronized void failedBy(String why, List<Integer> missing) {
    fail(Wire.reason(why), missing);
  }

  private synchronized void lost(Peer peer, IOException e) {
    if (failure != null || closed) return;
    String how = e instanceof java.io.EOFException ? "end of stream"
        : e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
    fail("rank " + peer.rank + " left the world without closing it (its connection to the store dropped: " + how + ")",
        List.of(peer.rank));
  }

  private synchronized void aborted(Peer peer, String why) {
    fail("world aborted by rank " + peer.rank + ": " + Wire.reason(why), List.of());
  }

  private void watchLoop() {
    while (true) {
      synchronized (this) {
        if (closed) return;
        if (failure == null && roundOpen && System.nanoTime() - deadline > 0) {
          List<Integer> missing = new ArrayList<>();
          for (int r = 0; r < size; r++) if (!arrived[r]) missing.add(r);
          String what = round == 0 ? "did not join the world" : "did not reach all-gather round " + round;
          fail("rank(s) " + missing + " " + what + " within " + timeoutNanos / 1_000_000 + " ms", missing);
        }
        long now = System.nanoTime();
        for (Subset s : subsets.values()) {
          if (failure != null || !s.open || now - s.deadline <= 0) continue;
          List<Integer> missing = new ArrayList<>();
          for (int i = 0; i < s.members.length; i++) if (!s.arrived[i]) missing.add(s.members[i]);
          fail("rank(s) " + missing + " did not reach round " + s.round + " of the all-gather among ranks "
              + Arrays.toString(s.members) + " within " + subsetTimeoutNanos() / 1_000_000 + " ms", missing);
        }
        try {
          wait(WATCH_MILLIS);
        } catch (InterruptedException e) {
          return;
        }
      }
    }
  }

  /**
   * Records the world's one failure and tells every connected rank; later requests get it too.
   * Answers are written under the store's lock: they are a few bytes to ranks that are all
   * blocked reading, so a write cannot stall on a full socket buffer.
   */
  private void fail(String why, List<Integer> missing) {
    if (failure != null) return;
    failure = why;
    failedMissing = missing;
    for (Peer p : peers) if (p != null) send(p, Wire.FAILED, why);
  }

  private void send(Peer p, int tag, String message) {
    if (p == null) return;
    try {
      synchronized (p.out) {
        p.out.writeInt(tag);
        if (tag == Wire.FAILED) {
          p.out.writeUTF(message);
          p.out.writeInt(failedMissing.size());
          for (int r : failedMissing) p.out.writeInt(r);
        }
        p.out.flush();
      }
    } catch (IOException ignored) {
      // That rank is gone; its reader reports it.
    }
  }

  private void sendBlobs(Peer p, byte[][] blobs) {
    try {
      synchronized (p.out) {
        p.out.writeInt(Wire.GATHERED);
        p.out.writeInt(blobs.length);
        for (byte[] b : blobs) Wire.writeBlob(p.out, b);
        p.out.flush();
      }
    } catch (IOException ignored) {
      // That rank is gone; its reader reports it.
    }
  }

  int port() {
    return server.getLocalPort();
  }

  /**
   * Waits (up to the timeout) until every rank has said goodbye, so that the last round's answers
   * reach the ranks before the store goes, then closes everything it owns.
   */
  @Override
  public void close() {
    close(timeoutNanos);
  }

  /** Closes at once, as a dead rank 0 would: for tests of the fault path. */
  void abandon() {
    close(0);
  }

  private void close(long waitNanos) {
    long end = System.nanoTime() + waitNanos;
    synchronized (this) {
      while (failure == null && !allLeft() && end - System.nanoTime() > 0) {
        try {
          wait(WATCH_MILLIS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          break;
        }
      }
      closed = true;
      notifyAll();
    }
    closeQuietly(server);
    List<Thread> threads;
    synchronized (this) {
      for (Socket s : sockets) closeQuietly(s);
      threads = new ArrayList<>(readers);
    }
    threads.add(acceptor);
    threads.add(watchdog);
    for (Thread t : threads) {
      try {
        t.join(1000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  private boolean allLeft() {
    for (int r = 0; r < size; r++) {
      Peer p = peers[r];
      if (p != null && !p.left && !p.socketClosed()) return false;
    }
    return true;
  }

  private static void closeQuietly(AutoCloseable c) {
    try {
      c.close();
    } catch (Exception ignored) {
      // Closing is best effort on the way out.
    }
  }

  /** A subset's rounds: like the world's, by member index. */
  private static final class Subset {
    final int[] members;
    final byte[][] blobs;
    final boolean[] arrived;
    long round = 1;
    int arrivals;
    boolean open;
    long deadline;

    Subset(int[] members) {
      this.members = members.clone();
      this.blobs = new byte[members.length][];
      this.arrived = new boolean[members.length];
    }
  }

  /** One rank's connection, once it has said which rank it is. */
  private static final class Peer {
    final int rank;
    final DataOutputStream out;
    volatile boolean left;
    volatile boolean gone;

    Peer(int rank, DataOutputStream out) {
      this.rank = rank;
      this.out = out;
    }

    boolean socketClosed() {
      return gone;
    }
  }
}
