package io.moeyard.comm;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.dispatch.Routing;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.testkit.TestSeed;
import io.moeyard.engine.transport.CpuWorld;
import io.moeyard.testkit.Workload;
import java.lang.foreign.Arena;
import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Steady-state calls of a communicator allocate next to nothing on the Java heap: after a few
 * warm-up calls, each rank thread's allocated bytes ({@code ThreadMXBean#getCurrentThreadAllocatedBytes})
 * in the least of {@link #CALLS} more calls of dispatch, combine and combineShuffled stay within a
 * per-call bound, phase by phase, on ranks that are threads of this JVM. A property of the code, not of its
 * speed: the JVM counts the bytes whether or not the JIT has compiled the path (and so before
 * escape analysis could hide an allocation), and the results are still checked against the
 * reference.
 *
 * <p>It runs in a JVM of its own with the SIMD sums off (combine's pom, execution steady-state):
 * until C2 compiles them, Vector API calls box their vectors on the heap, the JDK's allocation
 * rather than the data path's; elsewhere it is skipped.
 */
class SteadyStateAllocationTest {
  private static final int WARMUP = 10;
  private static final int CALLS = 20;
  /**
   * A shuffled combine's delivery, past the combine it starts with: the all-gather's and the
   * closing barrier's result arrays ({@code Object[ranks]} each, CpuWorld's rendezvous hands every
   * rank a copy) and nothing else. It allocated 1.5 to 2.3 KB per call (announcement, counts, the
   * arrivals' arrays, two slices per row copied) before its scratch moved into the communicator.
   */
  private static final long DELIVERY_BOUND = 256;
  /**
   * What a dispatch still allocates per call on these worlds (up to 8 ranks, 15 tokens, top-3),
   * 3 to 6 KB: the layout of the rank's tokens ({@code DispatchLayout}, a dozen arrays sized by
   * tokens x top-k), the announcement and send plan, the handle and its {@link Dispatched}, the
   * all-gathers' arrays, the relay's decoded routings. A guard against growth (per-row or
   * ranks-squared allocation), not a goal.
   */
  private static final long DISPATCH_BOUND = 8 * 1024;
  /**
   * What a combine still allocates per call, 0.35 to 0.85 KB: its announcement and home window,
   * the all-gathers' arrays, a few capturing lambdas. It allocated 1.1 to 1.7 KB before the
   * native sums and copies took views of their offset arrays made once (not per call) and the
   * checks stopped building their message prefix per call.
   */
  private static final long COMBINE_BOUND = 1024;
  private static final com.sun.management.ThreadMXBean THREADS =
      (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

  /** Bytes per call of each phase on the worst rank: dispatch, combine, a shuffled combine's delivery (past its combine). */
  private record PerCall(long dispatch, long combine, long delivery) {}

  private static PerCall measure(Topology topo, CommConfig.Variant variant, CommConfig.NodePath path, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    int ranks = topo.worldSize();
    int experts = ranks * 2;
    int topk = 3;
    int hidden = 64;
    int[] tokens = new int[ranks];
    int[][] idx = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      tokens[r] = 8 + rnd.nextInt(8);
      idx[r] = Workload.randomRouting(rnd, tokens[r], experts, topk, 0.1);
    }
    Workload wl = Workload.of(ExpertMap.trivial(topo, experts), topk, hidden, DType.BF16, tokens, idx, rnd.nextLong());
    CommConfig cfg = wl.config().withVariant(variant).withNodePath(path);
    int[][] next = new int[ranks][];
    for (int r = 0; r < ranks; r++) {
      next[r] = new int[tokens[r]];
      for (int t = 0; t < tokens[r]; t++) next[r][t] = rnd.nextInt(ranks);
    }
    RowBuffer[] ys = wl.ys();
    try (CpuWorld world = CpuWorld.create(topo); Arena arena = Arena.ofShared()) {
      List<long[]> bytes = world.run(t -> {
        int r = t.rank();
        RowBuffer x = wl.x(r);
        Routing routing = wl.routing(r);
        RowBuffer out = RowBuffer.allocate(arena, tokens[r], hidden, wl.outType);
        RowBuffer into = RowBuffer.allocate(arena, wl.maxTokens() * ranks, hidden, wl.outType);
        // the least of the calls: a wait's liveness checks allocate now and then (more often on a
        // busy host) and only add, while what the data path allocates, it allocates every call
        long[] used = {Long.MAX_VALUE, Long.MAX_VALUE, Long.MAX_VALUE};
        try (Communicator comm = Communicator.cpu(t, wl.map, cfg)) {
          for (int i = 0; i < WARMUP + CALLS; i++) {
            boolean counted = i >= WARMUP;
            long a = THREADS.getCurrentThreadAllocatedBytes();
            Dispatched d = comm.dispatch(x, routing);
            long b = THREADS.getCurrentThreadAllocatedBytes();
            comm.combine(d, ys[r], out);
            long c = THREADS.getCurrentThreadAllocatedBytes();
            d = comm.dispatch(x, routing);
            long e = THREADS.getCurrentThreadAllocatedBytes();
            comm.combineShuffled(d, ys[r], next[r], into);
            long f = THREADS.getCurrentThreadAllocatedBytes();
            if (counted) {
              used[0] = Math.min(used[0], Math.max(b - a, e - c));
              used[1] = Math.min(used[1], c - b);
              used[2] = Math.min(used[2], f - e);
            }
          }
        }
        // the calls measured still give the reference's bits
        String p = wl.ref.checkCombine(r, wl.w[r], ys, out);
        if (p != null) throw new AssertionError("rank " + r + ": " + p);
        return new long[] {used[0], used[1], used[2] - used[1]};
      });
      long[] worst = new long[3];
      for (long[] b : bytes) for (int k = 0; k < 3; k++) worst[k] = Math.max(worst[k], b[k]);
      PerCall pc = new PerCall(worst[0], worst[1], worst[2]);
      System.out.println("bytes per call, " + topo.nodes() + " x " + topo.localRanks() + " " + variant + " " + path + ": " + pc);
      return pc;
    }
  }

  @Test
  void steadyStateCallsAllocateWithinTheirBound() {
    Assumptions.assumeTrue(Boolean.getBoolean("moeyard.vector.disable"), "runs in combine's steady-state execution (SIMD sums off)");
    TestSeed seed = TestSeed.fresh();
    seed.check(() -> {
      long s = seed.value();
      // the JVM's first world pays once for what the JVM sets up on first use (method handle
      // forms, class initialisation), spread over its calls: not counted
      measure(Topology.singleNode(4), CommConfig.Variant.FUSED, CommConfig.NodePath.RELAY, s);
      check(measure(Topology.singleNode(4), CommConfig.Variant.FUSED, CommConfig.NodePath.RELAY, s), "1 x 4 fused");
      check(measure(Topology.singleNode(4), CommConfig.Variant.UNFUSED, CommConfig.NodePath.RELAY, s + 1), "1 x 4 unfused");
      check(measure(new Topology(2, 2), CommConfig.Variant.FUSED, CommConfig.NodePath.RELAY, s + 2), "2 x 2 fused, node relay");
      check(measure(new Topology(2, 2), CommConfig.Variant.FUSED, CommConfig.NodePath.DIRECT, s + 3), "2 x 2 fused, direct");
      check(measure(Topology.singleNode(8), CommConfig.Variant.FUSED, CommConfig.NodePath.RELAY, s + 4), "1 x 8 fused");
    });
  }

  private static void check(PerCall pc, String world) {
    assertTrue(pc.delivery() <= DELIVERY_BOUND, world + ": a shuffled combine's delivery allocates " + pc.delivery()
        + " bytes per call, more than " + DELIVERY_BOUND);
    assertTrue(pc.dispatch() <= DISPATCH_BOUND, world + ": a dispatch allocates " + pc.dispatch() + " bytes per call, more than "
        + DISPATCH_BOUND);
    assertTrue(pc.combine() <= COMBINE_BOUND, world + ": a combine allocates " + pc.combine() + " bytes per call, more than "
        + COMBINE_BOUND);
  }
}
