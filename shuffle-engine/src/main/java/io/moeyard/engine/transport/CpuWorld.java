package io.moeyard.engine.transport;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.Topology;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * The embedded backend's world: R ranks that are threads of this JVM and share its address
 * space, so a collective writes straight into its peers' buffers (the CPU analogue of CUDA IPC
 * peer stores on an NVLink node).
 *
 * <p>Ranks can be driven by the caller's own threads (take {@link #transport(int)} on each) or by
 * {@link #run}, which starts one platform thread per rank for one SPMD function.
 */
public final class CpuWorld implements AutoCloseable {
  /** Default wait for the slowest rank before a collective fails naming it. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);

  private final Topology topology;
  private final Rendezvous rendezvous;
  private final Transport[] transports;
  private final ExecutorService rankThreads;

  private CpuWorld(Topology topology, Duration timeout) {
    this.topology = topology;
    this.rendezvous = new Rendezvous(topology.worldSize(), timeout.toNanos());
    this.transports = new Transport[topology.worldSize()];
    for (int r = 0; r < transports.length; r++) transports[r] = new InJvm(r);
    AtomicInteger n = new AtomicInteger();
    ThreadFactory tf = task -> {
      Thread t = new Thread(task, "moeyard-rank-" + n.getAndIncrement());
      t.setDaemon(true);
      return t;
    };
    this.rankThreads = Executors.newFixedThreadPool(topology.worldSize(), tf);
  }

  public static CpuWorld create(Topology topology) {
    return new CpuWorld(topology, DEFAULT_TIMEOUT);
  }

  public static CpuWorld create(Topology topology, Duration timeout) {
    if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive, got " + timeout);
    return new CpuWorld(topology, timeout);
  }

  public Topology topology() {
    return topology;
  }

  public int size() {
    return topology.worldSize();
  }

  public Transport transport(int rank) {
    if (rank < 0 || rank >= transports.length) {
      throw new IllegalArgumentException("rank " + rank + " outside [0, " + transports.length + ")");
    }
    return transports[rank];
  }

  /**
   * Runs {@code body} on every rank at once, one thread per rank, and returns the results by
   * rank. If any rank throws, the world is aborted (so the others fail fast rather than time out)
   * and the first failure, by rank, is rethrown with the others suppressed.
   */
  public <T> List<T> run(Function<Transport, T> body) {
    List<Future<T>> futures = new ArrayList<>(transports.length);
    for (Transport t : transports) {
      futures.add(rankThreads.submit(() -> {
        try {
          return body.apply(t);
        } catch (Throwable e) {
          // A bad-input CollectiveException is thrown by every rank alike; anything else is
          // this rank's alone and must not leave the others waiting.
          if (!(e instanceof CollectiveException)) {
            rendezvous.abort("rank " + t.rank() + " failed: " + e, e);
          }
          throw e;
        }
      }));
    }
    List<T> results = new ArrayList<>(transports.length);
    RuntimeException first = null;
    for (Future<T> f : futures) {
      try {
        results.add(f.get());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new CollectiveException("interrupted while waiting for the ranks", e);
      } catch (ExecutionException e) {
        Throwable c = e.getCause();
        RuntimeException re = c instanceof RuntimeException r ? r : new CollectiveException(c.toString(), c);
        if (first == null) first = re;
        else if (first != re) first.addSuppressed(re);
        results.add(null);
      }
    }
    if (first != null) throw first;
    return results;
  }

  /** True once a rank failed or timed out; every later collective on this world fails. */
  public boolean aborted() {
    return rendezvous.aborted();
  }

  @Override
  public void close() {
    rankThreads.shutdownNow();
  }

  private final class InJvm implements Transport {
    private final int rank;
    /** This rank's sendRecv scratch. */
    private final PointToPoint pointToPoint;

    InJvm(int rank) {
      this.rank = rank;
      this.pointToPoint = new PointToPoint(this);
    }

    @Override
    public void sendRecv(java.lang.foreign.MemorySegment[] send, java.lang.foreign.MemorySegment[] recv) {
      pointToPoint.run(send, recv);
    }

    @Override
    public int rank() {
      return rank;
    }

    @Override
    public int size() {
      return transports.length;
    }

    @Override
    public Topology topology() {
      return topology;
    }

    @Override
    public Object[] allGather(Object mine) {
      return rendezvous.allGather(rank, mine);
    }

    @Override
    public void abort(Throwable cause) {
      rendezvous.abort(io.moeyard.engine.CollectiveException.abortReason(rank, cause), cause);
    }

    /**
     * Throws the world's abort (a rank's, a timeout's, a failed rank's of {@link #run}) as the next
     * collective would. Ranks are threads of this JVM: none can die alone, so that is all there is.
     */
    @Override
    public void checkPeers() {
      rendezvous.checkAborted();
    }

    @Override
    public boolean peerStores() {
      return true;
    }
  }
}
