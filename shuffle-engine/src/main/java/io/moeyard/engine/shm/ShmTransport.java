package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RendezvousException;
import io.moeyard.engine.transport.EncodedGather;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * A {@link Transport} for ranks that are processes on one host: the data path's memory is
 * shared-memory files (under {@link ShmFiles#dir()}) that every rank maps, so dispatch and
 * combine make the same direct stores into their peers' buffers as ranks that are threads of one
 * JVM, and give the same bits. Small per-call messages go through a shared-memory
 * {@link ControlBlock} (the store of the {@link ProcessWorld} only carries the set-up and any
 * message too large for a slot).
 *
 * <pre>{@code
 * try (ShmTransport t = ShmTransport.join(Map.of("model", "x"));       // RANK, WORLD_SIZE, ... from the env
 *      Communicator comm = Communicator.cpu(t, experts, config)) {     // its buffers in shared memory
 *   ...
 * }
 * }</pre>
 *
 * <p>Owns its world (closes it), the control block's mapping, and nothing else: every
 * {@link #peerMemory} belongs to its caller. A collective waits at most the timeout and fails
 * naming the ranks it waited for; a peer whose process dies is noticed within milliseconds.
 *
 * <p>{@link #checkPeers()} sees, between collectives: an abort of the world (the control block's
 * word), a peer that left (closed its transport) or whose process is gone (any peer, not only
 * those a round waits for; a process in another pid namespace is not visible, and then only the
 * store's word below and the timeouts tell), and a failure the store pushed (a rank's connection
 * to it dropped, an abort through it).
 */
public final class ShmTransport implements Transport, AutoCloseable {
  /** Bytes of one rank's message slot; larger messages go through the store. */
  public static final int SLOT_BYTES = 64 << 10;
  /** Set by {@code moeyard launch}: the pid that owns the job's files (see {@link ShmFiles}). */
  public static final String OWNER_PID_ENV = "MOEYARD_LAUNCHER_PID";

  private final ProcessWorld world;
  private final BlockMapping mapping;
  private final ControlBlock control;
  private final String job;
  private final RegionTable regions;
  private volatile boolean closed;

  private ShmTransport(ProcessWorld world, Arena controlArena, ControlBlock control, String job) {
    this.world = world;
    this.mapping = new BlockMapping(control, controlArena);
    this.control = control;
    this.job = job;
    this.regions = new RegionTable(this, ShmFiles.dir(), job, p -> true);
  }

  /** Joins the process world the environment describes (torchrun variables) and opens its shared memory. */
  public static ShmTransport join(Map<String, String> config) {
    return open(ProcessWorld.join(config), ProcessWorld.DEFAULT_TIMEOUT);
  }

  /**
   * Opens the shared-memory transport of {@code world} (a collective: every rank calls it); the
   * transport then owns the world. {@code timeout} bounds every later collective.
   */
  public static ShmTransport open(ProcessWorld world, Duration timeout) {
    try {
      return create(world, timeout);
    } catch (RuntimeException | Error e) {
      world.close();
      throw e;
    }
  }

  private static ShmTransport create(ProcessWorld world, Duration timeout) {
    int rank = world.rank();
    int ranks = world.size();
    long owner = ownerPid();
    if (rank == 0) ShmFiles.sweepOrphans();
    // rank 0's owner names the job for all (under torchrun each rank would pick its own pid)
    byte[] mine = rank == 0 ? Long.toString(owner).getBytes(java.nio.charset.StandardCharsets.US_ASCII) : new byte[0];
    owner = Long.parseLong(new String(world.allGather(mine).get(0), java.nio.charset.StandardCharsets.US_ASCII));
    String job = ShmFiles.job(owner, world.env().masterPort());
    Path file = ShmFiles.control(job);
    long bytes = ControlBlock.bytes(ranks, SLOT_BYTES);
    Arena arena = Arena.ofShared();
    boolean ok = false;
    try {
      String problem = null;
      MemorySegment seg = null;
      if (rank == 0) {
        try {
          seg = map(file, bytes, true, arena);
          ControlBlock.format(seg, ranks, SLOT_BYTES);
        } catch (IOException e) {
          problem = "rank 0 cannot create the control block " + file + ": " + e;
        }
      }
      agree(world, problem);
      if (rank != 0) {
        try {
          seg = map(file, bytes, false, arena);
        } catch (IOException e) {
          problem = "rank " + rank + " cannot map the control block " + file + ": " + e;
        }
      }
      ControlBlock control = seg == null ? null : new ControlBlock(seg, rank, ranks, SLOT_BYTES, timeout.toNanos());
      if (control != null) {
        try {
          control.register();
        } catch (CollectiveException e) {
          problem = e.getMessage();
        }
      }
      agree(world, problem); // everybody mapped it and registered: the name can go
      if (rank == 0) ShmFiles.deleteQuietly(file);
      control.watchPeers();
      ok = true;
      return new ShmTransport(world, arena, control, job);
    } finally {
      if (!ok) {
        if (rank == 0) ShmFiles.deleteQuietly(file);
        arena.close();
      }
    }
  }

  static long ownerPid() {
    String v = System.getenv(OWNER_PID_ENV);
    if (v != null) {
      try {
        return Long.parseLong(v.strip());
      } catch (NumberFormatException ignored) {
        // Not a launcher's pid: this process owns its files.
      }
    }
    return ProcessHandle.current().pid();
  }

  /** Over the store: fails every rank with the first rank's problem, if any rank has one. */
  private static void agree(ProcessWorld world, String problem) {
    byte[] mine = problem == null ? new byte[0] : problem.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    for (byte[] b : world.allGather(mine)) {
      if (b.length > 0) throw new CollectiveException(new String(b, java.nio.charset.StandardCharsets.UTF_8));
    }
  }

  /** Creates {@code file} of {@code bytes} (or maps the existing one, never creating it) and maps it into {@code arena}. */
  static MemorySegment map(Path file, long bytes, boolean create, Arena arena) throws IOException {
    if (create) {
      Files.deleteIfExists(file); // a leftover of a crashed job with the same owner and port
      try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
        raf.setLength(bytes);
        ShmReserve.reserve(file, bytes); // a shortage now, not a bus error at the first touch
        return raf.getChannel().map(FileChannel.MapMode.READ_WRITE, 0, bytes, arena);
      }
    }
    // a missing file is an error (NoSuchFileException): a rank looking in a directory its peers do not share would leave a stray one
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      if (ch.size() < bytes) throw new IOException(file + " holds " + ch.size() + " bytes, expected " + bytes);
      return ch.map(FileChannel.MapMode.READ_WRITE, 0, bytes, arena);
    }
  }

  @Override
  public int rank() {
    return world.rank();
  }

  @Override
  public int size() {
    return world.size();
  }

  @Override
  public Topology topology() {
    return world.topology();
  }

  /** The job's name in its files' names ({@code moeyard-<job>-...}). */
  public String job() {
    return job;
  }

  @Override
  public boolean peerStores() {
    return true;
  }

  @Override
  public boolean sharesAddressSpace() {
    return false;
  }

  @Override
  public boolean reachable(MemorySegment segment) {
    return regions.reachable(segment);
  }

  /** {@link MessageCodec#PLAIN} values only; anything else needs {@link #allGather(Object, MessageCodec)}. */
  @Override
  public Object[] allGather(Object mine) {
    return allGather(mine, MessageCodec.PLAIN);
  }

  /**
   * A message this rank cannot send (a segment outside its peer memory, a value the codec refuses,
   * more than the store's limit when it does not fit a slot) fails every rank alike, naming it,
   * and the world goes on.
   */
  @Override
  public <T> Object[] allGather(T mine, MessageCodec<T> codec) {
    return EncodedGather.allGather(rank(), mine, codec, regions, ProcessWorld.MAX_BLOB, this::exchange);
  }

  private synchronized byte[][] exchange(byte[] mine) {
    if (closed) throw new CollectiveException("rank " + rank() + ": the transport is closed");
    byte[][] all = control.exchange(mine);
    for (byte[] b : all) {
      if (b == null) {
        // somebody's message did not fit its slot: this round goes through the store, for everybody
        try {
          List<byte[]> got = world.allGather(mine);
          return got.toArray(new byte[0][]);
        } catch (RendezvousException e) {
          throw storeFailed(e);
        }
      }
    }
    return all;
  }

  /**
   * The store's failure as this transport's. A peer's abort reaches the control block before the
   * store, so that one is thrown as a collective would throw it; otherwise the control block is
   * aborted with the store's failure (peers waiting there hear it too), and a failure that names
   * ranks is a {@link CollectiveTimeoutException}.
   */
  private CollectiveException storeFailed(RendezvousException e) {
    control.checkAborted();
    control.abort(e.getMessage());
    return e.asCollective(e.getMessage()); // the store's messages already name this rank
  }

  /**
   * Without waiting: throws the abort of the world, then a {@link CollectiveTimeoutException}
   * naming any peer that left or whose process is gone (and aborts the world with it, as a wait
   * in a collective would), then the failure the store pushed, if any. Not synchronized with
   * the collectives: a collective running on another thread does not hold it up.
   */
  @Override
  public void checkPeers() {
    boolean mapped = !closed && mapping.whileMapped(() -> {
      control.checkAborted();
      control.checkPeersOrTheirAbort();
      try {
        world.checkPeers();
      } catch (RendezvousException e) {
        throw storeFailed(e);
      }
    });
    if (!mapped) throw new CollectiveException("rank " + rank() + ": the transport is closed");
  }

  /**
   * This rank's shared-memory file of {@code bytes}, mapped by every peer (a collective). The file
   * is created, mapped by all, then unlinked before this returns, so it disappears with the last
   * process that maps it, however they end. A rank that cannot create its file or map a peer's (or
   * asks for a negative size) fails every rank with one message naming it.
   */
  @Override
  public synchronized PeerMemory peerMemory(long bytes) {
    if (closed) throw new CollectiveException("rank " + rank() + ": the transport is closed");
    return regions.create(bytes);
  }

  @Override
  public void abort(Throwable cause) {
    mapping.abort(CollectiveException.abortReason(rank(), cause));
    // a peer may be waiting in a round that went through the store (a message too big for its
    // slot), where the control block does not reach it
    world.abort(CollectiveException.abortReason(rank(), cause));
  }

  /** True once a rank aborted the world or was found dead (after close: as the block said then). */
  public boolean aborted() {
    return mapping.aborted();
  }

  /**
   * Leaves the world: peers still waiting for this rank fail at once, naming it. Closes the world
   * (rank 0 waits, bounded, for the others' goodbyes) and unmaps the control block; peer memory
   * stays with its owners.
   */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    control.leave();
    world.close();
    mapping.close();
  }
}
