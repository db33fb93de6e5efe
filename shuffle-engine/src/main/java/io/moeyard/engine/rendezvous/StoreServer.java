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
 * <p>Owns its server socket, the accepted sockets, the acceptor, one reader per connection and the
 * watchdog; {@link #close} ends them all.
 */
final class StoreServer implements AutoCloseable {
  private static final long WATCH_MILLIS = 20;

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
    for (Peer p : peers) sendBlobs(p);
    nextRound();
  }

  private void nextRound() {
    round++;
    arrivals = 0;
    roundOpen = false;
    Arrays.fill(arrived, false);
    Arrays.fill(blobs, null);
  }

  private synchronized void lost(Peer peer, IOException e) {
    if (failure != null || closed) return;
    fail("rank " + peer.rank + " left the world without closing it (its connection to the store dropped: "
        + e.getMessage() + ")", List.of(peer.rank));
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

  private void sendBlobs(Peer p) {
    try {
      synchronized (p.out) {
        p.out.writeInt(Wire.GATHERED);
        p.out.writeInt(size);
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
