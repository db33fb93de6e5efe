package io.moeyard.bench.jmh;

import io.moeyard.engine.Topology;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.StoreTransport;
import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * One host meeting: an {@code allGather} of {@code bytes} between ranks (two, unless the
 * transport says four), the unit that a communicator's per-call agreements are made of (a cuda
 * rank process meets its peers on the host a few times per dispatch and per combine: the
 * openings, the layout counts, the barriers around the stores). Rank 0 is the benchmark thread;
 * the others are threads of this JVM that meet it in a loop. The transports:
 * <ul>
 *   <li>{@code injvm}: {@link CpuWorld}'s, ranks that are threads (virtual ranks);
 *   <li>{@code shm}: {@link ShmTransport}'s control block in shared memory, as between rank
 *       processes of one machine;
 *   <li>{@code store}: {@link StoreTransport}, every meeting a round through rank 0's TCP store,
 *       as between machines (here over loopback: a network adds its round trip);
 *   <li>{@code cluster}: {@link ClusterTransport} with each rank on its own pretend machine, so
 *       every meeting is a round of the machines' leaders at the store, between two rounds of each
 *       machine's control block;
 *   <li>{@code store4}, {@code cluster2x2}: four ranks; for the cluster two pretend machines of two
 *       ranks each (only the leaders meet at the store).
 * </ul>
 * {@code allGather} scores one meeting; {@code dispatchMeetingsBefore} and {@code dispatchMeetingsNow}
 * the host meetings of one cuda dispatch between rank processes, before and after it met once and
 * kept its meetings about device events within machines. Run: {@code ./moeyard jmh HostMeetingBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class HostMeetingBenchmark {
  @Param({"injvm", "shm", "store", "cluster", "store4", "cluster2x2"})
  String transport;

  @Param({"1024"})
  int bytes;

  private Transport me;
  private Transport[] peers;
  private AutoCloseable[] owned = new AutoCloseable[0];
  private Thread[] peerThreads;
  private byte[] message;
  private static final byte GO = 0;
  private static final byte STOP = 1;

  /** What rank 0 and its peers do per benchmark call, after the benchmark method's name. */
  private enum Sequence { GATHER, DISPATCH_BEFORE, DISPATCH_NOW }

  private Sequence sequence;

  @Setup(Level.Trial)
  public void setup(org.openjdk.jmh.infra.BenchmarkParams params) throws Exception {
    message = new byte[bytes];
    String method = params.getBenchmark().substring(params.getBenchmark().lastIndexOf('.') + 1);
    sequence = switch (method) {
      case "dispatchMeetingsBefore" -> Sequence.DISPATCH_BEFORE;
      case "dispatchMeetingsNow" -> Sequence.DISPATCH_NOW;
      default -> Sequence.GATHER;
    };
    switch (transport) {
      case "injvm" -> {
        CpuWorld world = CpuWorld.create(Topology.singleNode(2), Duration.ofSeconds(30));
        me = world.transport(0);
        peers = new Transport[] {world.transport(1)};
        owned = new AutoCloseable[] {world};
      }
      case "shm", "store", "cluster", "store4", "cluster2x2" -> {
        int ranks = transport.equals("store4") || transport.equals("cluster2x2") ? 4 : 2;
        int port = freePort();
        Transport[] t = new Transport[ranks];
        Thread[] others = new Thread[ranks - 1];
        for (int r = 1; r < ranks; r++) {
          int rank = r;
          others[r - 1] = Thread.ofPlatform().start(() -> t[rank] = join(rank, ranks, port));
        }
        t[0] = join(0, ranks, port);
        for (Thread o : others) o.join();
        me = t[0];
        peers = Arrays.copyOfRange(t, 1, ranks);
        owned = new AutoCloseable[ranks];
        for (int r = 0; r < ranks; r++) owned[r] = (AutoCloseable) t[ranks - 1 - r]; // rank 0, the store's owner, last
      }
      default -> throw new IllegalArgumentException("transport " + transport + ": injvm, shm, store, cluster, store4 or cluster2x2");
    }
    peerThreads = new Thread[peers.length];
    for (int i = 0; i < peers.length; i++) {
      Transport peer = peers[i];
      peerThreads[i] = Thread.ofPlatform().name("host-meeting-rank-" + (i + 1)).start(() -> {
        byte[] mine = new byte[bytes];
        while (true) {
          Object[] got = peer.allGather(mine);
          if (((byte[]) got[0])[0] == STOP) return;
          rest(peer, mine);
        }
      });
    }
  }

  private Transport join(int rank, int ranks, int port) {
    RankEnv env = RankEnv.fromEnv(RankEnv.variables(rank, ranks, ranks, "127.0.0.1", port));
    Duration timeout = Duration.ofSeconds(30);
    ProcessWorld world = ProcessWorld.join(env, Map.of("bench", "host-meeting"), timeout);
    return switch (transport) {
      case "shm" -> ShmTransport.open(world, timeout);
      case "cluster" -> ClusterTransport.open(world, timeout, "pretend-machine-" + rank);
      case "cluster2x2" -> ClusterTransport.open(world, timeout, "pretend-machine-" + rank / 2);
      default -> StoreTransport.open(world);
    };
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  @Benchmark
  public Object[] allGather() {
    message[0] = GO;
    return me.allGather(message);
  }

  /**
   * A cuda rank process's host meetings in one dispatch before this change of the communicator:
   * the entries and the layout counts (two all-gathers), then two world barriers about device
   * events (the offsets, the sends).
   */
  @Benchmark
  public Object[] dispatchMeetingsBefore() {
    message[0] = GO;
    Object[] got = me.allGather(message);
    rest(me, message);
    return got;
  }

  /**
   * The same dispatch now: one all-gather (verdict, switches and counts together) and two machine
   * barriers, which a {@link ClusterTransport} keeps within each machine (elsewhere they are world
   * barriers).
   */
  @Benchmark
  public Object[] dispatchMeetingsNow() {
    message[0] = GO;
    Object[] got = me.allGather(message);
    rest(me, message);
    return got;
  }

  /** What follows the first all-gather of a call, the same on every rank. */
  private void rest(Transport t, byte[] mine) {
    switch (sequence) {
      case GATHER -> {}
      case DISPATCH_BEFORE -> {
        t.allGather(mine);
        t.barrier();
        t.barrier();
      }
      case DISPATCH_NOW -> {
        t.machineBarrier();
        t.machineBarrier();
      }
    }
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    message[0] = STOP;
    me.allGather(message); // the others see the stop and leave their loops
    for (Thread t : peerThreads) t.join(10_000);
    for (AutoCloseable c : owned) c.close();
  }
}
