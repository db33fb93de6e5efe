package io.moeyard.bench.run;

import io.moeyard.engine.shm.ClusterTransport;
import io.moeyard.engine.shm.ShmTransport;
import io.moeyard.engine.transport.Transport;
import java.util.Map;

/**
 * The transport a rank process of {@code moeyard bench --procs} meets its peers over, which it
 * owns: shared memory when every rank runs on this host ({@link ShmTransport}), the cluster
 * transport when the world spans machines ({@link ClusterTransport}: shared memory within each
 * machine, the store between them).
 */
record RankTransport(Transport transport, Runnable closer) implements AutoCloseable {
  /** Joins the world the torchrun variables describe, agreeing on {@code agreed}. */
  static RankTransport join(Map<String, String> agreed, boolean machines) {
    if (machines) {
      ClusterTransport t = ClusterTransport.join(agreed);
      return new RankTransport(t, t::close);
    }
    ShmTransport t = ShmTransport.join(agreed);
    return new RankTransport(t, t::close);
  }

  @Override
  public void close() {
    closer.run();
  }
}
