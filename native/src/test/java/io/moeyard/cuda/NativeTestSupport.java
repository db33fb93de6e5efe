package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.fail;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.IntFunction;
import org.junit.jupiter.api.Assumptions;

/** How tests decide between running, skipping with the reason, and failing. */
final class NativeTestSupport {

  private NativeTestSupport() {}

  /**
   * The host tests need the library, not a GPU. Skip (with the reason) only where the build had no
   * nvcc; where the jar carries the library, or -Dmoeyard.native.required=true, not loading it is a
   * failure.
   */
  static void requireLibrary() {
    NativeLibrary.Status s = NativeLibrary.load();
    if (s.loaded()) {
      return;
    }
    String msg = CudaAvailability.UNAVAILABLE + s.reason();
    if (NativeLibrary.packaged() || Boolean.getBoolean("moeyard.native.required")) {
      fail("the native library must load here but did not: " + msg);
    }
    Assumptions.abort(msg);
  }

  /** GPU tests: skip with "CUDA backend unavailable: <reason>" where there is no usable GPU. */
  static void requireGpu() {
    CudaAvailability a = CudaBackend.availability();
    Assumptions.assumeTrue(a.available(), a::message);
  }

  /** A GPU and NCCL, or the test is skipped with the reason. */
  static void requireGpuAndNccl() {
    requireGpu();
    NcclAvailability a = NcclAvailability.get();
    Assumptions.assumeTrue(a.available(), a::message);
  }

  /** What one rank does with its world. */
  interface Body {
    Object run(ProcessWorld w) throws Exception;
  }

  /**
   * Each rank of a process world of {@code n} (a real rendezvous on a free local port) on its own
   * thread: what its body returned, or the RuntimeException it threw; an AssertionError is rethrown.
   */
  static List<Object> ranks(int n, IntFunction<Body> body) throws Exception {
    return ranks(n, n, body);
  }

  /** As {@link #ranks(int, IntFunction)}, the ranks on nodes of {@code perNode} (LOCAL_WORLD_SIZE). */
  static List<Object> ranks(int n, int perNode, IntFunction<Body> body) throws Exception {
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
          try (ProcessWorld w = ProcessWorld.join(new RankEnv(rank, n, rank % perNode, perNode, "127.0.0.1", port), Map.of(), Duration.ofSeconds(10))) {
            return body.apply(rank).run(w);
          } catch (RuntimeException | AssertionError e) {
            return e;
          }
        }));
      }
      List<Object> out = new ArrayList<>();
      for (Future<Object> f : fs) {
        Object o = f.get();
        if (o instanceof AssertionError e) throw e;
        out.add(o);
      }
      return out;
    } finally {
      pool.shutdownNow();
    }
  }
}
