package io.moeyard.cuda;

import io.moeyard.engine.testkit.TestSeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.RendezvousException;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * The NCCL probe and the unique-id exchange. Here (no GPU, NCCL's Java bindings on the test class
 * path, their natives not) the probe must report NCCL unavailable with the reason and never throw;
 * where NCCL loads it must report its version. The exchange runs on a real process rendezvous (its
 * ranks on threads) with ids made up by the test: the exchange, not NCCL, is under test.
 */
class NcclTest {

  @Test
  void probeReportsAReasonOrAVersionAndNeverThrows() {
    NcclAvailability a = NcclAvailability.get();
    System.out.println("NcclTest: " + a.message());
    assertTrue(a == NcclAvailability.get(), "probed once");
    if (a.available()) {
      assertTrue(a.version() >= 20000, "version " + a.version());
      assertEquals(NcclUniqueIds.BYTES, NcclUniqueIds.make().length);
    } else {
      assertTrue(a.message().startsWith(NcclAvailability.UNAVAILABLE), a.message());
      assertTrue(a.reason().startsWith("NCCL's libraries cannot be loaded: ")
          || a.reason().startsWith("NCCL's Java bindings (org.bytedeco:cuda"), a.reason());
      assertEquals(0, a.version());
      CudaUnavailableException e = assertThrows(CudaUnavailableException.class, NcclUniqueIds::make);
      assertEquals(a.message(), e.getMessage());
    }
  }

  /** Without the bindings on the class path (as in the moeyard command, which does not pull them). */
  @Test
  void withoutTheBindingsTheProbeSaysSo() throws Exception {
    URL classes = Path.of(NcclAvailability.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toUri().toURL();
    try (URLClassLoader alone = new URLClassLoader(new URL[] {classes}, ClassLoader.getPlatformClassLoader())) {
      Class<?> c = Class.forName(NcclAvailability.class.getName(), true, alone);
      Object a = c.getMethod("get").invoke(null);
      String msg = (String) c.getMethod("message").invoke(a);
      assertEquals("NCCL unavailable: NCCL's Java bindings (org.bytedeco:cuda, org.bytedeco.cuda.global.nccl) are not on the class path",
          msg);
      assertFalse((Boolean) c.getMethod("available").invoke(a));
    }
  }

  @Test
  void everyRankGetsRankZerosId() throws Exception {
    byte[] id = new byte[NcclUniqueIds.BYTES];
    new Random(TestSeed.fresh().value()).nextBytes(id);
    List<Object> got = ranks(3, () -> id.clone());
    for (Object o : got) assertArrayEquals(id, (byte[]) o);
  }

  @Test
  void aBadIdOrAFailureOnRankZeroFailsEveryRankNamingIt() throws Exception {
    for (Object o : ranks(3, () -> new byte[5])) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertEquals("rank 0's NCCL unique id has 5 bytes, NCCL's have 128", e.getMessage());
    }
    for (Object o : ranks(2, () -> {
      throw new IllegalStateException("no NCCL here");
    })) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertEquals("rank 0 could not make the NCCL unique id: java.lang.IllegalStateException: no NCCL here", e.getMessage());
    }
  }

  /** Each rank of a process world of {@code n} on its own thread: the exchanged id or what it threw. */
  private static List<Object> ranks(int n, Supplier<byte[]> make) throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
    ExecutorService pool = Executors.newFixedThreadPool(n);
    try {
      List<Future<Object>> fs = new ArrayList<>();
      for (int r = 0; r < n; r++) {
        int rank = r;
        fs.add(pool.submit(() -> {
          try (ProcessWorld w = ProcessWorld.join(new RankEnv(rank, n, rank, n, "127.0.0.1", port), Map.of(), Duration.ofSeconds(10))) {
            return NcclUniqueIds.exchange(w, make);
          } catch (RuntimeException e) {
            return e;
          }
        }));
      }
      List<Object> out = new ArrayList<>();
      for (Future<Object> f : fs) out.add(f.get());
      return out;
    } finally {
      pool.shutdownNow();
    }
  }
}
