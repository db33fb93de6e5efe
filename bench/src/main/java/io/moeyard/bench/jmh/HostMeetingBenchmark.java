package io.moeyard.bench.jmh;

import io.moeyard.engine.Topology;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.StoreTransport;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.engine.transport.Transport;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
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
 * One host meeting: an {@code allGather} of {@code bytes} between two ranks, the unit that a
 * communicator's per-call agreements are made of (a cuda rank process meets its peers on the host
 * a few times per dispatch and per combine: the openings, the layout counts, the barriers around
 * the stores). Rank 0 is the benchmark thread; rank 1 is a thread of this JVM that meets it in a
 * loop. The transports:
 * <ul>
 *   <li>{@code injvm}: {@link CpuWorld}'s, ranks that are threads (virtual ranks);
 *   <li>{@code shm}: {@link ShmTransport}'s control block in shared memory, as between rank
 *       processes of one machine;
 *   <li>{@code store}: {@link StoreTransport}, every meeting a round through rank 0's TCP store,
 *       as between machines (here over loopback: a network adds its round trip).
 * </ul>
 * Score is time per meeting. Run: {@code ./moeyard jmh HostMeetingBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class HostMeetingBenchmark {
  @Param({"injvm", "shm", "store"})
  String transport;

  @Param({"1024"})
  int bytes;

  private Transport me;
  private Transport peer;
  private AutoCloseable[] owned = new AutoCloseable[0];
  private Thread peerThread;
  private byte[] message;
  private static final byte GO = 0;
  private static final byte STOP = 1;

  @Setup(Level.Trial)
  public void setup() throws Exception {
    message = new byte[bytes];
    switch (transport) {
      case "injvm" -> {
        CpuWorld world = CpuWorld.create(Topology.singleNode(2), Duration.ofSeconds(30));
        me = world.transport(0);
        peer = world.transport(1);
        owned = new AutoCloseable[] {world};
      }
      case "shm", "store" -> {
        int port = freePort();
        Transport[] t = new Transport[2];
        Thread other = Thread.ofPlatform().start(() -> t[1] = join(1, port));
        t[0] = join(0, port);
        other.join();
        me = t[0];
        peer = t[1];
        owned = new AutoCloseable[] {(AutoCloseable) t[1], (AutoCloseable) t[0]};
      }
      default -> throw new IllegalArgumentException("transport " + transport + ": injvm, shm or store");
    }
    peerThread = Thread.ofPlatform().name("host-meeting-rank-1").start(() -> {
      byte[] mine = new byte[bytes];
      while (true) {
        Object[] got = peer.allGather(mine);
        if (((byte[]) got[0])[0] == STOP) return;
      }
    });
  }

  private Transport join(int rank, int port) {
    RankEnv env = RankEnv.fromEnv(RankEnv.variables(rank, 2, 2, "127.0.0.1", port));
    ProcessWorld world = ProcessWorld.join(env, Map.of("bench", "host-meeting"), Duration.ofSeconds(30));
    return transport.equals("shm") ? ShmTransport.open(world, Duration.ofSeconds(30)) : StoreTransport.open(world);
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

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    message[0] = STOP;
    me.allGather(message); // rank 1 sees the stop and leaves its loop
    peerThread.join(10_000);
    for (AutoCloseable c : owned) c.close();
  }
}
