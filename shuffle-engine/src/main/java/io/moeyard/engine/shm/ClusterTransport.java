package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.CollectiveTimeoutException;
import io.moeyard.engine.Topology;
import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import io.moeyard.engine.rendezvous.RendezvousException;
import io.moeyard.engine.transport.EncodedGather;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.Transport;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A {@link Transport} for host meetings of ranks on any machines: the ranks of one machine meet
 * through a shared-memory {@link ControlBlock} of their own, and only the machines' leaders (the
 * lowest world rank of each) meet between machines, in a round of rank 0's store among them
 * ({@link ProcessWorld#allGatherAmong}). An all-gather is a round of the machine's block, one
 * round of the leaders at the store (none when the world is one machine), and a second round of
 * the block in which each leader hands its machine the world's messages. A
 * {@link #machineBarrier} is one round of the block, nothing more. {@link #sendRecv} agrees its
 * sizes in one such all-gather, then sends each message straight to its receiver: out of the
 * sender's peer memory within a machine, otherwise over a direct TCP connection between the two
 * ranks ({@code PeerLinks}, opened by the first {@code sendRecv}); no byte passes through rank 0.
 *
 * <p>Peer memory ({@link #peerMemory}) is shared within a machine only: each rank's file is mapped
 * by the ranks of its machine, which {@link #reaches} (every rank, {@link #peerStores()}, when the
 * world is one machine). In a message ({@link #allGather(Object, MessageCodec)}) a segment of
 * another machine's rank is {@link MemorySegment#NULL}: only {@code reaches(p)} peers' memory can
 * be used; what crosses machines travels with {@link #sendRecv}.
 *
 * <pre>{@code
 * try (ClusterTransport t = ClusterTransport.join(Map.of("model", "x"))) {   // RANK, WORLD_SIZE, ... from the env
 *   Object[] all = t.allGather(myId, ID_CODEC);
 *   t.machineBarrier();                                                     // this machine's ranks only
 * }
 * }</pre>
 *
 * <p>Machines are told apart by name ({@link #thisMachine()}: host name and boot id); ranks with
 * the same name must share {@link ShmFiles#dir()}. A round whose message (or whose world of
 * messages) does not fit a slot ({@link #SLOT_BYTES}) goes through the store with every rank, a
 * decision every rank takes alike.
 *
 * <p>Failures, every one named within the timeout: a rank that does not arrive is named
 * ({@link CollectiveTimeoutException}, world rank) by its own machine at two thirds of the timeout
 * ({@link #MACHINE_WAIT}), which fails the world through the store with that name; a machine whose
 * every rank is missing (or whose ranks arrive more than a third of the timeout after the first
 * machine's) is named by the store, its leader, at the timeout. A rank process that dies is found by its machine's peers within milliseconds (its pid)
 * and by the store (its connection). {@link #abort} reaches the control block and the store; a
 * rank waiting in its block also reads the store's failures every few milliseconds, so that news
 * from other machines ends every wait promptly. In {@link #sendRecv}, a peer whose connection ends
 * is named at once, one that sends nothing at half the timeout (before its machine's block names
 * the waiting rank), and the world fails with the name. A
 * failure is final.
 *
 * <p>Owns its world (closes it), the control block's mapping and its {@code PeerLinks}; every
 * {@link #peerMemory} belongs to its caller.
 */
public final class ClusterTransport implements Transport, AutoCloseable {
  /**
   * Bytes of one rank's message slot in its machine's block, and of the world's messages a leader
   * hands its machine: a device dispatch's counts, ~(experts + ranks) x 4 bytes per rank, fit for
   * 64 ranks and a few hundred experts. Anything larger goes through the store.
   */
  public static final int SLOT_BYTES = 256 << 10;

  /** First byte of a machine's messages at the leaders' round and of the leader's hand-over. */
  private static final byte FITS = 0;
  private static final byte TOO_BIG = 1;
  private static final byte[] NOTHING = new byte[0];
  /**
   * Share of the timeout a machine's ranks wait for each other in their block: less than the
   * store's wait for the leaders (one timeout), so that a missing rank is named by its machine,
   * precisely, before the store would name its leader, and every failure within the timeout.
   */
  static final double MACHINE_WAIT = 2.0 / 3;

  /** Beyond a leader's longest legitimate stay at the store (one timeout), before its machine names it. */
  private static final long HAND_OVER_GRACE_NANOS = 2_000_000_000L;

  private final ProcessWorld world;
  private final BlockMapping mapping;
  private final ControlBlock control;
  private final int[] machineOf;
  /** World ranks of each machine, ascending; a machine's leader is its first. */
  private final int[][] machineRanks;
  private final int[] leaders;
  private final boolean leader;
  private final long handOverNanos;
  /** This rank's direct connections to its peers, opened by the first {@link #sendRecv} that needs them. */
  private final PeerLinks links;
  private final RegionTable regions;
  private final String job;
  private volatile boolean closed;
  // sendRecv's scratch, sized for the world here: a round reuses it (peers read this rank's post
  // decoded from bytes, never these arrays); sendRecv is synchronized, so one round at a time
  private final long[] sendBytes;
  private final long[] recvBytes;
  private final MemorySegment[] shared;
  private final Posted self;
  private final Posted[] posted;
  private final boolean[][] want;
  private final MemorySegment[] linkSend;
  private final MemorySegment[] linkRecv;
  private final boolean[] linked;

  private ClusterTransport(ProcessWorld world, Arena controlArena, ControlBlock control, int[] machineOf,
      int[][] machineRanks, long timeoutNanos, String job, Path dir, long linkToken) {
    this.world = world;
    this.mapping = new BlockMapping(control, controlArena);
    this.control = control;
    this.machineOf = machineOf;
    this.machineRanks = machineRanks;
    this.leaders = new int[machineRanks.length];
    for (int m = 0; m < leaders.length; m++) leaders[m] = machineRanks[m][0];
    this.leader = leaders[machineOf[world.rank()]] == world.rank();
    this.handOverNanos = timeoutNanos + HAND_OVER_GRACE_NANOS;
    this.links = new PeerLinks(world.rank(), world.size(), linkToken, timeoutNanos, this::checkWorldForLinks);
    int m = machineOf[world.rank()];
    this.regions = new RegionTable(this, dir, job, p -> machineOf[p] == m);
    this.job = job;
    int ranks = world.size();
    this.sendBytes = new long[ranks];
    this.recvBytes = new long[ranks];
    this.shared = new MemorySegment[ranks];
    this.self = new Posted(null, sendBytes, recvBytes, shared);
    this.posted = new Posted[ranks];
    this.want = new boolean[ranks][ranks];
    this.linkSend = new MemorySegment[ranks];
    this.linkRecv = new MemorySegment[ranks];
    this.linked = new boolean[ranks];
  }

  /** Joins the world the environment describes (torchrun variables), default timeout, on {@link #thisMachine()}. */
  public static ClusterTransport join(Map<String, String> config) {
    return join(RankEnv.fromEnv(), config, ProcessWorld.DEFAULT_TIMEOUT, thisMachine());
  }

  /**
   * Joins as {@code env} says, as a rank of machine {@code machine} (ranks with the same name share
   * a machine: memory, {@link ShmFiles#dir()}); {@code timeout} bounds the join and every later
   * collective. A collective: every rank calls it.
   */
  public static ClusterTransport join(RankEnv env, Map<String, String> config, Duration timeout, String machine) {
    return open(ProcessWorld.join(env, config, timeout), timeout, machine);
  }

  /**
   * The cluster transport of {@code world} (a collective), which it then owns, this rank on
   * {@code machine}; {@code timeout} bounds every later collective.
   */
  public static ClusterTransport open(ProcessWorld world, Duration timeout, String machine) {
    return open(world, timeout, machine, ShmFiles.dir());
  }

  /** With the machines' blocks and peer memory under {@code dir}: tests give a rank a directory its machine does not share. */
  static ClusterTransport open(ProcessWorld world, Duration timeout, String machine, Path dir) {
    try {
      return create(world, timeout, machine, dir);
    } catch (RuntimeException | Error e) {
      world.close();
      throw e;
    }
  }

  /**
   * The environment variable that names this process's machine instead ({@link #thisMachine()}):
   * processes of one host given different names rehearse a world of several machines
   * ({@code moeyard launch --machine-name}), as if no memory were shared between them.
   */
  public static final String MACHINE_ENV = "MOEYARD_MACHINE";

  /**
   * This machine's name: {@link #MACHINE_ENV} when set, else its host name and boot id, so that
   * hosts that reuse a name (or a machine rebooted since) are not taken for one.
   */
  public static String thisMachine() {
    String named = System.getenv(MACHINE_ENV);
    if (named != null && !named.isBlank()) return named.strip();
    String host = hostName();
    try {
      return host + " (boot " + Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim() + ")";
    } catch (IOException | RuntimeException e) {
      return host;
    }
  }

  /**
   * The kernel's host name, read without a name lookup: a host whose name does not resolve (a
   * container's, or a machine missing from its own /etc/hosts) must still tell itself apart from
   * its peers, and a lookup may wait seconds for a name server.
   */
  static String hostName() {
    try {
      String h = Files.readString(Path.of("/proc/sys/kernel/hostname")).strip();
      if (!h.isEmpty()) return h;
    } catch (IOException | RuntimeException e) {
      // Not Linux: ask the JDK.
    }
    try {
      return java.net.InetAddress.getLocalHost().getHostName();
    } catch (IOException e) {
      return "unknown-host";
    }
  }

  private static ClusterTransport create(ProcessWorld world, Duration timeout, String machine, Path dir) {
    int rank = world.rank();
    int ranks = world.size();
    // every rank's owner (its launcher, or itself) and machine name, or what is wrong with its arguments
    String bad = null;
    if (machine == null || machine.isBlank()) bad = "rank " + rank + " gave no machine name (null or blank)";
    else if (timeout == null || timeout.isNegative() || timeout.isZero()) bad = "rank " + rank + " has timeout " + timeout + ", not positive";
    byte[] text = (bad == null ? machine : bad).getBytes(StandardCharsets.UTF_8);
    byte[] hello = ByteBuffer.allocate(9 + text.length).order(ByteOrder.LITTLE_ENDIAN)
        .putLong(ShmTransport.ownerPid()).put((byte) (bad == null ? 0 : 1)).put(text).array();
    List<byte[]> hellos = world.allGather(hello);
    Map<String, Integer> index = new LinkedHashMap<>();
    int[] machineOf = new int[ranks];
    long[] owners = new long[ranks];
    List<String> problems = new ArrayList<>();
    for (int r = 0; r < ranks; r++) {
      byte[] h = hellos.get(r);
      owners[r] = ByteBuffer.wrap(h).order(ByteOrder.LITTLE_ENDIAN).getLong();
      String said = new String(h, 9, h.length - 9, StandardCharsets.UTF_8);
      if (h[8] != 0) {
        problems.add(said);
        continue;
      }
      Integer m = index.putIfAbsent(said, index.size());
      machineOf[r] = m == null ? index.size() - 1 : m;
    }
    if (!problems.isEmpty()) {
      throw new CollectiveException(String.join("; ", problems) + " (every rank needs a machine name, as "
          + "ClusterTransport.thisMachine(), and a positive timeout)");
    }
    int machines = index.size();
    int[] counts = new int[machines];
    for (int r = 0; r < ranks; r++) counts[machineOf[r]]++;
    int[][] machineRanks = new int[machines][];
    for (int m = 0; m < machines; m++) machineRanks[m] = new int[counts[m]];
    int[] filled = new int[machines];
    for (int r = 0; r < ranks; r++) machineRanks[machineOf[r]][filled[machineOf[r]]++] = r;
    int m = machineOf[rank];
    int[] local = machineRanks[m];
    int at = java.util.Arrays.binarySearch(local, rank);
    boolean leads = at == 0;
    String name = index.keySet().stream().skip(m).findFirst().orElseThrow();

    // the leader's owner names its machine's file: a process of that machine, so that a sweep
    // there (which removes files whose owner is gone) never takes a live job's file for an orphan
    if (leads) ShmFiles.sweepOrphans(dir);
    String job = ShmFiles.job(owners[local[0]], world.env().masterPort());
    Path file = ShmFiles.machineControl(dir, job, m);
    long fileBytes = ControlBlock.bytes(local.length, SLOT_BYTES);
    Arena arena = Arena.ofShared();
    boolean ok = false;
    try {
      String problem = null;
      MemorySegment seg = null;
      if (leads) {
        try {
          seg = ShmTransport.map(file, fileBytes, true, arena);
          ControlBlock.format(seg, local.length, SLOT_BYTES);
        } catch (IOException e) {
          problem = "rank " + rank + " (leader of machine " + m + ", '" + name + "') cannot create its control block "
              + file + ": " + e;
        }
      }
      agree(world, problem);
      if (!leads) {
        try {
          seg = ShmTransport.map(file, fileBytes, false, arena);
        } catch (IOException e) {
          problem = "rank " + rank + " cannot map the control block " + file + " of machine " + m + " ('" + name
              + "'), which its leader rank " + local[0] + " created: " + e + ". Ranks that report the same machine "
              + "must share " + dir + ": containers that share a host name and a kernel but not " + dir
              + " look like one machine (give each its own machine name, or share " + dir + ")";
        }
      }
      long timeoutNanos = timeout.toNanos();
      long machineWait = (long) (timeoutNanos * MACHINE_WAIT);
      ControlBlock control = seg == null ? null : new ControlBlock(seg, at, local, SLOT_BYTES, machineWait, world::checkPeers);
      if (control != null) {
        try {
          control.register();
        } catch (CollectiveException e) {
          problem = e.getMessage();
        }
      }
      agree(world, problem); // everybody mapped its machine's block and registered: the names can go
      if (leads) ShmFiles.deleteQuietly(file);
      control.watchPeers();
      ClusterTransport t = new ClusterTransport(world, arena, control, machineOf, machineRanks, timeoutNanos, job, dir,
          owners[0] * 65_537 + world.env().masterPort()); // rank 0's owner and the store's port: this job's links only
      ok = true;
      return t;
    } finally {
      if (!ok) {
        if (leads) ShmFiles.deleteQuietly(file);
        arena.close();
      }
    }
  }

  /** Over the store: fails every rank with the first rank's problem, if any rank has one. */
  private static void agree(ProcessWorld world, String problem) {
    byte[] mine = problem == null ? NOTHING : problem.getBytes(StandardCharsets.UTF_8);
    for (byte[] b : world.allGather(mine)) {
      if (b.length > 0) throw new CollectiveException(new String(b, StandardCharsets.UTF_8));
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

  /** Machines are numbered in the order their first rank appears. */
  @Override
  public int machineOf(int r) {
    return machineOf[r];
  }

  /** How many machines the world spans. */
  public int machines() {
    return machineRanks.length;
  }

  /** The job's name in its files' names ({@code moeyard-<job>-...}). */
  public String job() {
    return job;
  }

  /** True when the world is one machine: then, as on {@link ShmTransport}, every rank reaches every rank. */
  @Override
  public boolean peerStores() {
    return machines() == 1;
  }

  /** True for the ranks of this rank's machine, which map its peer memory and whose it maps. */
  @Override
  public boolean reaches(int peer) {
    return machineOf[peer] == machineOf[rank()];
  }

  @Override
  public boolean sharesAddressSpace() {
    return false;
  }

  /** True for a segment inside this rank's own peer memory (which only its machine's ranks reach). */
  @Override
  public boolean reachable(MemorySegment segment) {
    return regions.reachable(segment);
  }

  /**
   * This rank's shared-memory file of at least {@code bytes}, mapped by the ranks of its machine
   * only (a collective of the whole world: every rank calls it, in the same order; each may ask
   * for a different size). The file is created, mapped by its machine's ranks, then unlinked
   * before this returns. A rank that cannot create its file or map a peer's fails every rank of
   * the world with one message naming it and the file.
   */
  @Override
  public synchronized PeerMemory peerMemory(long bytes) {
    checkUsable();
    return regions.create(bytes);
  }

  /** {@link MessageCodec#PLAIN} values only; anything else needs {@link #allGather(Object, MessageCodec)}. */
  @Override
  public Object[] allGather(Object mine) {
    return allGather(mine, MessageCodec.PLAIN);
  }

  /**
   * Encodes {@code mine}, exchanges every rank's bytes and decodes each peer's (this rank's own
   * entry is {@code mine} itself). A segment is named by its place in the sender's peer memory and
   * resolves to this process's mapping of it for a rank of this machine, to
   * {@link MemorySegment#NULL} for a rank of another machine (only {@link #reaches} peers' memory
   * can be used). A message this rank cannot encode (a segment outside its peer memory, a value
   * the codec refuses) or that exceeds the store's limit ({@link ProcessWorld#MAX_BLOB}) fails every rank
   * alike and leaves the world usable.
   */
  @Override
  public synchronized <T> Object[] allGather(T mine, MessageCodec<T> codec) {
    return EncodedGather.allGather(rank(), mine, codec, regions, ProcessWorld.MAX_BLOB, this::exchange);
  }

  /** One round of this machine's block: waits for this machine's ranks only. */
  @Override
  public synchronized void machineBarrier() {
    checkUsable();
    try {
      control.exchange(NOTHING);
    } catch (RendezvousException e) {
      throw storeFailed(e);
    } catch (CollectiveException e) {
      throw blockFailed(e);
    }
  }

  /** Every rank's bytes by world rank: the machine's round, the leaders' round, the hand-over. */
  private byte[][] exchange(byte[] mine) {
    checkUsable();
    try {
      byte[][] local = control.exchange(mine);
      if (machineRanks.length == 1) {
        for (byte[] b : local) if (b == null) return throughStore(mine);
        return local; // one machine: local index is world rank
      }
      byte[][] all = null;
      byte[] handOver = NOTHING;
      if (leader) {
        List<byte[]> machines = world.allGatherAmong(leaders, machinePayload(local));
        all = worldOf(machines);
        handOver = all == null ? new byte[] {TOO_BIG} : encodeWorld(all);
        if (handOver[0] == TOO_BIG) all = null; // its machine cannot have it: every rank takes the store's round
      }
      byte[][] handed = control.exchange(handOver, handOverNanos);
      if (!leader) {
        byte[] h = handed[0];
        if (h == null) throw new IllegalStateException("the leader's hand-over did not fit its slot"); // encodeWorld checked it
        if (h[0] == FITS) all = decodeWorld(h);
      }
      return all == null ? throughStore(mine) : all;
    } catch (RendezvousException e) {
      throw storeFailed(e);
    } catch (CollectiveException e) {
      throw blockFailed(e);
    }
  }

  /** A round every rank of the world takes through the store (a message too big for the block). */
  private byte[][] throughStore(byte[] mine) {
    return world.allGather(mine).toArray(new byte[0][]);
  }

  /** FITS and this machine's messages (length, bytes) in local order, or TOO_BIG when one did not fit its slot. */
  private static byte[] machinePayload(byte[][] local) {
    int n = 1;
    for (byte[] b : local) {
      if (b == null) return new byte[] {TOO_BIG};
      n += 4 + b.length;
    }
    ByteBuffer out = ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN).put(FITS);
    for (byte[] b : local) out.putInt(b.length).put(b);
    return out.array();
  }

  /** Every rank's message by world rank from the machines' payloads (by machine), or null when a machine's did not fit. */
  private byte[][] worldOf(List<byte[]> machines) {
    byte[][] all = new byte[size()][];
    for (int m = 0; m < machines.size(); m++) {
      ByteBuffer in = ByteBuffer.wrap(machines.get(m)).order(ByteOrder.LITTLE_ENDIAN);
      if (in.get() != FITS) return null;
      for (int r : machineRanks[m]) {
        byte[] b = new byte[in.getInt()];
        in.get(b);
        all[r] = b;
      }
    }
    return all;
  }

  /** FITS and every message (length, bytes) by world rank, or TOO_BIG when that does not fit a slot. */
  private byte[] encodeWorld(byte[][] all) {
    long n = 1;
    for (byte[] b : all) n += 4 + b.length;
    if (n > control.capacity()) return new byte[] {TOO_BIG};
    ByteBuffer out = ByteBuffer.allocate((int) n).order(ByteOrder.LITTLE_ENDIAN).put(FITS);
    for (byte[] b : all) out.putInt(b.length).put(b);
    return out.array();
  }

  private byte[][] decodeWorld(byte[] handOver) {
    ByteBuffer in = ByteBuffer.wrap(handOver, 1, handOver.length - 1).order(ByteOrder.LITTLE_ENDIAN);
    byte[][] all = new byte[size()][];
    for (int r = 0; r < all.length; r++) {
      all[r] = new byte[in.getInt()];
      in.get(all[r]);
    }
    return all;
  }

  private void checkUsable() {
    if (closed) throw new CollectiveException("rank " + rank() + ": the transport is closed");
    try {
      control.checkAborted();
    } catch (CollectiveException e) {
      throw blockFailed(e);
    }
  }

  /**
   * The store's failure as this transport's: this machine's block is aborted with it (its ranks
   * hear it too), and a failure that names ranks is a {@link CollectiveTimeoutException}. A failure
   * the block saw first is thrown instead, so that a machine's ranks report one failure.
   */
  private CollectiveException storeFailed(RendezvousException e) {
    if (control.aborted()) {
      try {
        control.checkAborted();
      } catch (CollectiveException first) {
        return blockFailed(first);
      }
    }
    String why = withMachines(e);
    control.abort(why, e.missingRanks());
    return e.asCollective(why);
  }

  /**
   * The store's message, and where it names a machine's leader as missing from the leaders'
   * round, that machine's ranks: the leader waits for them first, so when the whole machine came
   * late (more than a third of a timeout) the store names the leader while one of its ranks is
   * the late one.
   */
  private String withMachines(RendezvousException e) {
    String m = e.getMessage();
    if (!m.contains("of the all-gather among ranks")) return m; // StoreServer's words for a subset round's deadline
    StringBuilder sb = new StringBuilder(m);
    for (int r : e.missingRanks()) {
      int[] its = machineRanks[machineOf[r]];
      if (its[0] == r && its.length > 1) {
        sb.append("; rank ").append(r).append(" leads machine ").append(machineOf[r]).append(" (ranks ")
            .append(java.util.Arrays.toString(its)).append(") and waits for its machine's ranks before it meets the other"
            + " machines: the late one may be any of them");
      }
    }
    return sb.toString();
  }

  /**
   * The block's failure as this transport's: one that names ranks (a timeout, a peer found dead
   * or gone, here or by another rank of the machine) is a {@link CollectiveTimeoutException}
   * naming them, and goes to the store too, so that other machines fail with the same names
   * rather than at their own timeouts. A plain abort reached the store from the rank that made it.
   */
  private CollectiveException blockFailed(CollectiveException e) {
    if (e instanceof CollectiveTimeoutException t) {
      world.fail(t.getMessage(), t.missingRanks());
      return t;
    }
    List<Integer> missing = control.abortMissing();
    if (missing.isEmpty()) return e;
    world.fail(e.getMessage(), missing);
    CollectiveTimeoutException t = new CollectiveTimeoutException(e.getMessage(), missing);
    t.initCause(e);
    return t;
  }

  /** One rank's side of a {@link #sendRecv} round: its sizes, and the send segments a peer of its machine copies itself. */
  private record Posted(String problem, long[] sendBytes, long[] recvBytes, MemorySegment[] shared) {}

  /** A refused round travels as a refusal ({@link EncodedGather}): every rank fails alike. */
  private static final MessageCodec<Posted> POSTED = new MessageCodec<>() {
    @Override
    public void write(Posted p, MessageWriter out) {
      if (p.problem != null) throw new IllegalArgumentException(p.problem);
      out.putLongs(p.sendBytes).putLongs(p.recvBytes);
      for (MemorySegment s : p.shared) out.putSegment(s);
    }

    @Override
    public Posted read(MessageReader in) {
      long[] sendBytes = in.getLongs();
      long[] recvBytes = in.getLongs();
      MemorySegment[] shared = new MemorySegment[sendBytes.length];
      for (int q = 0; q < shared.length; q++) shared[q] = in.getSegment();
      return new Posted(null, sendBytes, recvBytes, shared);
    }
  };

  /**
   * {@link Transport#sendRecv} over direct connections between ranks ({@code PeerLinks}). First
   * one all-gather (this transport's own) of every rank's per-peer sizes, checked on every rank,
   * so that a mismatch (or a bad argument: wrong lengths, a read-only receive segment, a closed
   * arena) fails every rank alike, naming sender and receiver, before a byte moves, and the world
   * stays usable. Then each message travels its own way:
   *
   * <ul>
   *   <li>to itself: one copy;
   *   <li>to a rank of this machine, from a segment in this rank's {@link #peerMemory}: the
   *       receiver copies it out of its mapping of the sender's file (the segment is posted in the
   *       all-gather), as {@code PointToPoint} does; the receiver copies before it returns, so
   *       before its next collective, and the sender's buffer is free once that collective
   *       returns, as the contract says;
   *   <li>otherwise (another machine, or memory this rank's peers cannot read): over the pair's
   *       TCP connection, every peer at once through one selector. Connections between machines
   *       open at the first call, those within a machine at the first round that needs them
   *       (alike on every rank: every rank reads the same all-gather).
   * </ul>
   *
   * Any segments will do; bytes sent over a connection are copied out before this returns. A peer
   * whose connection ends is named at once, one from which nothing arrives within the timeout at
   * the timeout ({@link CollectiveTimeoutException}); the world fails with the name, through this
   * machine's block and the store. An abort or failure elsewhere ends the wait within milliseconds.
   */
  @Override
  public synchronized void sendRecv(MemorySegment[] send, MemorySegment[] recv) {
    checkUsable();
    int ranks = size();
    int me = rank();
    java.util.Arrays.fill(sendBytes, 0);
    java.util.Arrays.fill(recvBytes, 0);
    java.util.Arrays.fill(shared, null);
    String problem = null;
    if (send == null || recv == null || send.length != ranks || recv.length != ranks) {
      problem = "sendRecv needs one send and one receive segment per rank (" + ranks + "), got "
          + (send == null ? "null" : send.length) + " and " + (recv == null ? "null" : recv.length);
    } else {
      for (int q = 0; q < ranks && problem == null; q++) {
        sendBytes[q] = send[q] == null ? 0 : send[q].byteSize();
        recvBytes[q] = recv[q] == null ? 0 : recv[q].byteSize();
        if (sendBytes[q] > 0 && !send[q].scope().isAlive() || recvBytes[q] > 0 && !recv[q].scope().isAlive()) {
          problem = "a sendRecv segment for rank " + q + " is no longer alive (its arena is closed)";
        } else if (recvBytes[q] > 0 && recv[q].isReadOnly()) {
          problem = "sendRecv's receive segment for rank " + q + " is read-only";
        } else if (q != me && sendBytes[q] > 0 && reaches(q) && regions.reachable(send[q])) {
          shared[q] = send[q];
        }
      }
    }
    // a refusal is a post of its own: the codec refuses it for every rank (never on a good round)
    Object[] got = allGather(problem == null ? self : new Posted(problem, sendBytes, recvBytes, shared), POSTED);
    for (int p = 0; p < ranks; p++) posted[p] = p == me ? self : (Posted) got[p];
    for (int p = 0; p < ranks; p++) {
      for (int q = 0; q < ranks; q++) {
        if (posted[p].sendBytes[q] != posted[q].recvBytes[p]) {
          throw new CollectiveException("sendRecv: rank " + p + " sends rank " + q + " " + posted[p].sendBytes[q]
              + " bytes, rank " + q + " expects " + posted[q].recvBytes[p]);
        }
      }
    }
    // the pairs connected from now on: every pair of machines from the first round, every pair
    // within a machine from the first round that sends memory its peer cannot read; alike on
    // every rank (every rank reads the same all-gather), so that connecting is a collective
    boolean local = false;
    for (int p = 0; p < ranks; p++) {
      for (int q = 0; q < ranks; q++) {
        if (p != q && machineOf[p] == machineOf[q] && posted[p].sendBytes[q] > 0 && posted[p].shared[q] == null) local = true;
      }
    }
    for (int p = 0; p < ranks; p++) {
      for (int q = p + 1; q < ranks; q++) want[p][q] = machineOf[p] != machineOf[q] || local;
    }
    try {
      if (!links.covers(want)) links.connect(want, world.localAddress(), this::allGather);
    } catch (RuntimeException e) {
      throw linksBroken(e);
    }
    if (recvBytes[me] > 0) MemorySegment.copy(send[me], 0, recv[me], 0, recvBytes[me]);
    java.util.Arrays.fill(linkSend, null);
    java.util.Arrays.fill(linkRecv, null);
    java.util.Arrays.fill(linked, false);
    for (int p = 0; p < ranks; p++) {
      if (p == me) continue;
      MemorySegment from = posted[p].shared[me];
      if (from != null) MemorySegment.copy(from, 0, recv[p], 0, recvBytes[p]);
      else if (recvBytes[p] > 0) linkRecv[p] = recv[p];
      if (sendBytes[p] > 0 && shared[p] == null) linkSend[p] = send[p];
      linked[p] = linkSend[p] != null || linkRecv[p] != null;
    }
    try {
      links.exchange(linkSend, linkRecv, linked);
    } catch (CollectiveTimeoutException e) {
      throw linkFailed(e);
    } catch (RuntimeException e) {
      throw linksBroken(e);
    } finally {
      // no reference to the caller's segments outlives the round
      java.util.Arrays.fill(posted, null);
      java.util.Arrays.fill(shared, null);
      java.util.Arrays.fill(linkSend, null);
      java.util.Arrays.fill(linkRecv, null);
    }
  }

  /**
   * This rank's links cannot carry a round (they could not be made, or its selector failed): they
   * stay broken, so the world fails with it at once, rather than peers waiting on this rank until
   * the timeout. A failure of the world itself, relayed by the links, passes as it is.
   */
  private RuntimeException linksBroken(RuntimeException e) {
    if (!aborted()) abort(e);
    return e;
  }

  /**
   * A peer named by this rank's links (silent, or its connection ended) fails the world with its
   * name: this machine's block at once, the other machines through the store.
   */
  private CollectiveTimeoutException linkFailed(CollectiveTimeoutException e) {
    control.abort(e.getMessage(), e.missingRanks());
    world.fail(e.getMessage(), e.missingRanks());
    return e;
  }

  /**
   * Without waiting: throws the abort of the world (from this machine's block), then a
   * {@link CollectiveTimeoutException} naming a peer of this machine that left or whose process is
   * gone (the world fails with it), then the failure the store pushed (a rank of any machine lost
   * or timed out, an abort, rank 0 gone). Not held up by a collective running on another thread.
   */
  @Override
  public void checkPeers() {
    checkWorld(true);
  }

  /**
   * What {@link PeerLinks} checks between slices of a wait: the world's abort or failure (this
   * machine's block, the store), but not {@link #checkPeers}' peers that left: a peer whose part
   * of the round is done may close its transport while this rank still reads from others, and a
   * peer this rank still waits on that leaves or dies ends its connection, which the links name.
   */
  private void checkWorldForLinks() {
    checkWorld(false);
  }

  /** The block's abort, with {@code peersThatLeft} its peers that left or died, then the store's pushed failure. */
  private void checkWorld(boolean peersThatLeft) {
    boolean mapped = !closed && mapping.whileMapped(() -> {
      try {
        control.checkAborted();
        if (peersThatLeft) control.checkPeersOrTheirAbort();
        world.checkPeers();
      } catch (RendezvousException e) {
        throw storeFailed(e);
      } catch (CollectiveException e) {
        throw blockFailed(e);
      }
    });
    if (!mapped) throw new CollectiveException("rank " + rank() + ": the transport is closed");
  }

  /**
   * Fails every rank's current and later collectives, on every machine: this machine's ranks
   * through the block at once, the others through the store ("world aborted by rank r: ...").
   * Callable from any thread.
   */
  @Override
  public void abort(Throwable cause) {
    String why = CollectiveException.abortReason(rank(), cause);
    mapping.abort(why); // once closed the block is unmapped; the world's abort is quiet then too
    world.abort(why);
  }

  /** True once a rank aborted the world or was found dead, as far as this machine's block tells (after close: told then). */
  public boolean aborted() {
    return mapping.aborted();
  }

  /**
   * Leaves the world: peers of this machine still waiting for this rank fail at once, naming it
   * (other machines through the store). Closes the world (rank 0 waits, bounded, for the others'
   * goodbyes) and unmaps the block.
   */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    control.leave();
    world.close();
    links.close(); // after the goodbye: a peer still reading finds the world's news before a connection's end
    mapping.close();
  }
}
