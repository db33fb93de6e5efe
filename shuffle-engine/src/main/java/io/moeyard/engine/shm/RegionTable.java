package io.moeyard.engine.shm;

import io.moeyard.engine.CollectiveException;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;
import io.moeyard.engine.transport.PeerMemory;
import io.moeyard.engine.transport.SegmentTable;
import io.moeyard.engine.transport.Transport;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.IntPredicate;

/**
 * The peer memory of a transport whose ranks share memory through files: {@link #create} gives
 * each rank a shared-memory file of its own, mapped by the peers that reach it (every rank of one
 * host for {@link ShmTransport}, the ranks of one machine for {@link ClusterTransport}), and the
 * table names segments of this rank's files for its peers and resolves theirs. A peer this rank
 * does not map resolves to {@link MemorySegment#NULL}: zero bytes at address 0, so that any
 * access throws at once instead of touching memory.
 */
final class RegionTable implements SegmentTable {
  private final Transport transport;
  private final Path dir;
  private final String job;
  private final IntPredicate maps;
  private final Map<Integer, ShmRegion> regions = new ConcurrentHashMap<>();
  /**
   * The regions' values as an array, replaced whenever a region comes or goes (rarely: when a
   * communicator is built or closed), so that {@link #find}, which every sendRecv round and
   * encoded segment asks, walks it without making an iterator.
   */
  private volatile ShmRegion[] listed = new ShmRegion[0];
  /** Only {@link #create} touches it, under its transport's lock. */
  private int nextRegion;

  /**
   * The regions of {@code transport}'s job, named under {@code dir}; this rank maps the files of
   * the peers {@code maps} accepts (the same peers must map this rank's).
   */
  RegionTable(Transport transport, Path dir, String job, IntPredicate maps) {
    this.transport = transport;
    this.dir = dir;
    this.job = job;
    this.maps = maps;
  }

  /**
   * This rank's shared-memory file of at least {@code bytes}, with the files of the peers it maps
   * (a collective of the whole world, every rank in the same order, under its transport's lock:
   * the regions' ids follow the calls). The file is created, mapped by the peers that reach it,
   * then unlinked before this returns, so it disappears with the last process that maps it,
   * however they end. A rank that cannot create its file or map a peer's fails every rank with
   * the first such rank's message, and leaves no file.
   */
  PeerMemory create(long bytes) {
    int id = nextRegion++;
    int rank = transport.rank();
    int ranks = transport.size();
    long size = Math.max(4096, (bytes + 4095) & -4096L);
    Path own = ShmFiles.region(dir, job, rank, id);
    Arena arena = Arena.ofShared();
    MemorySegment[] mapped = new MemorySegment[ranks];
    boolean ok = false;
    try {
      String problem = null;
      if (bytes < 0) {
        problem = "rank " + rank + " asked for " + bytes + " bytes of peer memory (must be >= 0)";
      } else {
        try {
          mapped[rank] = ShmTransport.map(own, size, true, arena);
        } catch (IOException e) {
          problem = "rank " + rank + " cannot create " + own + " (" + size + " bytes of shared memory): " + e.getMessage();
        }
      }
      long[] sizes = gatherSizes(problem == null ? size : -1, problem);
      problem = null;
      for (int p = 0; p < ranks && problem == null; p++) {
        if (p == rank || !maps.test(p)) continue;
        Path peer = ShmFiles.region(dir, job, p, id);
        try {
          mapped[p] = ShmTransport.map(peer, sizes[p], false, arena);
        } catch (IOException e) {
          problem = "rank " + rank + " cannot map rank " + p + "'s " + peer + ": " + e;
        }
      }
      gatherSizes(0, problem); // everybody mapped what it reaches: the names can go
      ShmFiles.deleteQuietly(own);
      ShmRegion region = new ShmRegion(this, id, arena, mapped, rank);
      regions.put(id, region);
      relist();
      ok = true;
      return region;
    } finally {
      if (!ok) {
        ShmFiles.deleteQuietly(own);
        arena.close();
      }
    }
  }

  /** Every rank's size, or the first rank's problem thrown on every rank. */
  private long[] gatherSizes(long size, String problem) {
    Object[] all = transport.allGather(problem == null ? (Object) size : problem);
    long[] sizes = new long[all.length];
    for (int p = 0; p < all.length; p++) {
      if (all[p] instanceof String s) throw new CollectiveException(s);
      sizes[p] = (Long) all[p];
    }
    return sizes;
  }

  /** True when {@code s} lies in one of this rank's own files. */
  boolean reachable(MemorySegment s) {
    return find(s) != null;
  }

  private ShmRegion find(MemorySegment s) {
    ShmRegion[] all = listed;
    for (int i = 0; i < all.length; i++) if (all[i].containsOwn(s)) return all[i];
    return null;
  }

  void forget(ShmRegion region) {
    if (regions.remove(region.id, region)) relist();
  }

  private synchronized void relist() {
    listed = regions.values().toArray(new ShmRegion[0]);
  }

  /** Region id, offset and length; only segments of this rank's own files can be named. */
  @Override
  public void describe(MemorySegment segment, MessageWriter out) {
    ShmRegion r = find(segment);
    if (r == null) {
      throw new IllegalArgumentException("a segment of " + segment.byteSize()
          + " bytes is not in this rank's peer memory, so no peer can reach it");
    }
    out.putInt(r.id).putLong(r.offsetOf(segment)).putLong(segment.byteSize());
  }

  /** The slice of the sender's file as this process maps it, or {@link MemorySegment#NULL} for a sender it does not map. */
  @Override
  public MemorySegment resolve(MessageReader in) {
    int id = in.getInt();
    long offset = in.getLong();
    long length = in.getLong();
    ShmRegion r = regions.get(id);
    if (r == null) {
      throw new IllegalStateException("rank " + in.from() + " named peer memory region " + id + ", which rank "
          + transport.rank() + " does not map");
    }
    MemorySegment file = r.maps[in.from()];
    return file == null ? MemorySegment.NULL : file.asSlice(offset, length);
  }
}
