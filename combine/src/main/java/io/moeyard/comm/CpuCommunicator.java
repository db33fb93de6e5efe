package io.moeyard.comm;

import io.moeyard.combine.internal.Combiner;
import io.moeyard.combine.internal.FusedCombiner;
import io.moeyard.combine.internal.UnfusedCombiner;
import io.moeyard.dispatch.internal.DispatchHandle;
import io.moeyard.dispatch.internal.DispatchOptions;
import io.moeyard.dispatch.internal.Dispatcher;
import io.moeyard.dispatch.internal.FusedDispatcher;
import io.moeyard.dispatch.Routing;
import io.moeyard.dispatch.internal.UnfusedDispatcher;
import io.moeyard.engine.ExpertMap;
import io.moeyard.engine.RowBuffer;
import io.moeyard.engine.Topology;
import io.moeyard.engine.transport.Machines;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.lang.foreign.Arena;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;

/**
 * The CPU backend's communicator: ranks are threads of one JVM or processes, and rows move by
 * direct stores between their buffers (off-heap, or shared-memory mappings). Ranks on several
 * machines ({@code ClusterTransport}) store only within their node, which lies within a machine,
 * and cross nodes with messages: only the fused node-level path runs there ({@link Machines}).
 * Owns its dispatcher, combiner, peer memory (receive rows, windows) and arena; {@link #close()}
 * frees all.
 */
final class CpuCommunicator implements Communicator {
  private final Transport transport;
  private final ExpertMap experts;
  private final CommConfig config;
  private final int rank;
  private final Dispatcher dispatcher;
  private final Combiner combiner;
  private final Arena arena = Arena.ofShared();
  /** Everything peers store into: receive rows, window metadata, staging, home windows. */
  private final PeerMemory memory;
  private final RowBuffer receive;
  private final AsyncLane lane;
  /** Every message of this rank starts so; made once, not per call. */
  private final String me;
  private final ShuffledCombine shuffle;
  private long generation;
  private volatile boolean closed;

  CpuCommunicator(Transport transport, ExpertMap experts, CommConfig config) {
    this.transport = Objects.requireNonNull(transport, "transport");
    this.experts = Objects.requireNonNull(experts, "experts");
    this.config = Objects.requireNonNull(config, "config");
    if (experts.ranks() != transport.size()) {
      throw new IllegalArgumentException("expert map is for " + experts.ranks() + " ranks, the world has " + transport.size());
    }
    this.rank = transport.rank();
    this.me = "rank " + rank + ": ";
    this.shuffle = new ShuffledCombine(transport, this::packRows);
    this.lane = new AsyncLane("moeyard-comm-rank-" + rank, "rank " + rank);
    long worst = Communicator.worstCaseReceiveRows(transport.size(), config.maxTokens(), config.topk(), experts.slotsPerRank());
    long rows = config.receiveRows() > 0 ? config.receiveRows() : worst;
    if (rows > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("the worst-case receive buffer (" + worst + " rows) does not fit an int: set CommConfig.receiveRows");
    }
    DispatchOptions opts = new DispatchOptions(config.chunkPairs());
    boolean fused = config.variant() == CommConfig.Variant.FUSED;
    // before the peer memory's collective: every rank refuses alike, and nothing is left to free
    Machines.require(transport, fused ? "the fused single-hop path" : "the unfused path", !config.relaysOn(transport.topology()));
    int cap = (int) rows;
    // sized once, here: on a process transport this is this rank's shared-memory file
    this.memory = transport.peerMemory(peerMemoryBytes(config, transport.topology(), cap));
    try {
      this.receive = memory.rows(cap, config.hidden(), config.dispatchType());
      boolean relay = config.relaysOn(transport.topology());
      this.dispatcher = fused ? new FusedDispatcher(transport, experts, opts, memory, cap, relaySize(config, relay))
          : new UnfusedDispatcher(transport, experts, opts, memory, cap);
      this.combiner = fused
          ? new FusedCombiner(transport, config.chunkPairs(), memory, config.maxTokens(), config.topk(), relay)
          : new UnfusedCombiner(transport, config.chunkPairs(), memory, config.maxTokens(), config.topk());
    } catch (RuntimeException | Error e) {
      memory.close();
      throw e;
    }
  }

  private static FusedDispatcher.RelaySize relaySize(CommConfig config, boolean relay) {
    return relay ? new FusedDispatcher.RelaySize(config.maxTokens(), config.topk(), config.hidden(), config.dispatchType()) : null;
  }

  /**
   * Peer memory one rank's communicator carves: receive rows, window metadata (and staging), home
   * window, on the node-level path the relay's message slots and combine staging, and the rows a
   * shuffled combine leaves for its targets to pull.
   */
  static long peerMemoryBytes(CommConfig config, Topology topology, int receiveRows) {
    boolean fused = config.variant() == CommConfig.Variant.FUSED;
    boolean relay = config.relaysOn(topology);
    long combine = fused
        ? FusedCombiner.peerMemoryBytes(relay, topology, config.maxTokens(), config.topk(), config.hidden(), config.combineType())
        : Combiner.peerMemoryBytes(false, topology.worldSize(), config.maxTokens(), config.topk(), config.hidden(),
            config.combineType());
    return PeerMemory.rowsBytes(receiveRows, config.hidden(), config.dispatchType())
        + Dispatcher.peerMemoryBytes(fused, receiveRows, config.hidden(), config.dispatchType())
        + FusedDispatcher.relayBytes(topology, relaySize(config, relay))
        + combine
        + PeerMemory.rowsBytes(ShuffledCombine.homeRows(config), config.hidden(), config.combineType());
  }

  @Override
  public int rank() {
    return rank;
  }

  @Override
  public int ranks() {
    return transport.size();
  }

  @Override
  public ExpertMap expertMap() {
    return experts;
  }

  @Override
  public CommConfig config() {
    return config;
  }

  @Override
  public int receiveCapacity() {
    return receive.rows();
  }

  @Override
  public Dispatched dispatch(RowBuffer x, Routing routing) {
    return dispatch(x, routing, null, false);
  }

  @Override
  public Dispatched dispatch(RowBuffer x, Routing routing, RowBuffer into) {
    return dispatch(x, routing, Objects.requireNonNull(into, "into"), false);
  }

  private Dispatched dispatch(RowBuffer x, Routing routing, RowBuffer into, boolean async) {
    String problem = dispatchProblem(x, routing, into, async);
    DispatchHandle h = dispatcher.dispatch(x, routing, into == null ? receive : into, problem);
    return new Dispatched(this, ++generation, h);
  }

  /**
   * The refusal of a synchronous call while async calls are pending, said once they have ended:
   * they wait for their peers in collectives of their own, which the refusal's must not meet.
   */
  private String overtaking(int pending) {
    String problem = me + "a synchronous call while " + Math.max(1, pending) + " async call(s) are pending";
    lane.awaitIdle();
    return problem;
  }

  private String dispatchProblem(RowBuffer x, Routing routing, RowBuffer into, boolean async) {
    if (closed) return me + "the communicator is closed";
    if (!async && lane.pending() > 0) return overtaking(lane.pending());
    if (x == null) return me + "x is null";
    if (routing == null) return me + "routing is null";
    if (x.hidden() != config.hidden() || x.dtype() != config.dispatchType()) {
      return me + "x is " + x.hidden() + " x " + x.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.dispatchType().cliName();
    }
    if (routing.topk() != config.topk()) {
      return me + "routing has top-" + routing.topk() + ", the communicator was built for top-" + config.topk();
    }
    if (routing.tokens() > config.maxTokens()) {
      return me + "routing has " + routing.tokens() + " tokens, the communicator was built for at most " + config.maxTokens();
    }
    if (into != null && (into.hidden() != config.hidden() || into.dtype() != config.dispatchType())) {
      return me + "the receive buffer is " + into.hidden() + " x " + into.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.dispatchType().cliName();
    }
    return null;
  }

  @Override
  public void combine(Dispatched d, RowBuffer y, RowBuffer out) {
    combine(d, y, out, false);
  }

  private void combine(Dispatched d, RowBuffer y, RowBuffer out, boolean async) {
    String problem = combineProblem(d, y, out, async);
    combiner.combine(problem == null ? d.handle : null, y, out, problem);
  }

  /** Home rows of a shuffled combine: carved from peer memory on the first one (the room is reserved at construction). */
  private RowBuffer homeRows;
  /** The last call's view of {@link #homeRows}, one row per token: kept while the token count stays. */
  private RowBuffer home;

  @Override
  public Arrivals combineShuffled(Dispatched d, RowBuffer y, int[] nextRank, RowBuffer into) {
    String problem = combineProblem(d, y, into, false);
    if (problem == null) problem = ShuffledCombine.targetProblem(rank, transport.size(), d.tokens(), config, nextRank, into);
    if (problem == null && homeRows == null) {
      homeRows = memory.rows(ShuffledCombine.homeRows(config), config.hidden(), config.combineType());
    }
    if (problem == null && (home == null || home.rows() != d.tokens())) {
      home = new RowBuffer(homeRows.segment(), homeRows.offset(), d.tokens(), config.hidden(), config.combineType(), null);
    }
    combiner.combine(problem == null ? d.handle : null, y, problem == null ? home : null, problem);
    return shuffle.deliver(nextRank, into, home);
  }

  /** Rows a shuffled combine packs for targets that cannot read its home (other machines): made on the first such call. */
  private RowBuffer packRows;

  private RowBuffer packRows() {
    if (packRows == null) packRows = RowBuffer.allocate(arena, ShuffledCombine.homeRows(config), config.hidden(), config.combineType());
    return packRows;
  }

  private String combineProblem(Dispatched d, RowBuffer y, RowBuffer out, boolean async) {
    if (closed) return me + "the communicator is closed";
    if (!async && lane.pending() > 0) return overtaking(lane.pending());
    if (d == null) return me + "the dispatch result is null";
    if (d.owner != this) return me + "the dispatch result belongs to another communicator";
    if (d.generation != generation) {
      return me + "the dispatch result is from an earlier dispatch (" + d.generation + "; the latest is " + generation
          + "): its rows were overwritten";
    }
    if (y == null || out == null) return me + (y == null ? "expert output" : "out") + " is null";
    if (y.hidden() != config.hidden() || y.dtype() != config.combineType()) {
      return me + "expert output is " + y.hidden() + " x " + y.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.combineType().cliName();
    }
    if (out.hidden() != config.hidden() || out.dtype() != config.combineType()) {
      return me + "out is " + out.hidden() + " x " + out.dtype().cliName() + ", the communicator was built for "
          + config.hidden() + " x " + config.combineType().cliName();
    }
    return null;
  }

  @Override
  public CompletableFuture<Dispatched> dispatchAsync(RowBuffer x, Routing routing) {
    return lane.submit(() -> dispatch(x, routing, null, true));
  }

  @Override
  public CompletableFuture<Void> combineAsync(Dispatched d, RowBuffer y, RowBuffer out) {
    return lane.submit(() -> {
      combine(d, y, out, true);
      return null;
    });
  }

  @Override
  public void close() {
    synchronized (this) {
      if (closed) return;
      closed = true;
    }
    lane.close(); // lets queued collectives finish: peers are waiting for them
    dispatcher.close();
    combiner.close();
    memory.close();
    arena.close();
  }
}
