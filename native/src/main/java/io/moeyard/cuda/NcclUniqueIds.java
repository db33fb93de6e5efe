package io.moeyard.cuda;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RendezvousException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * How the ranks of an NCCL world agree on its unique id: rank 0 makes one ({@code ncclGetUniqueId})
 * and every rank takes rank 0's copy from the process rendezvous ({@link ProcessWorld#allGather}),
 * the torchrun-style exchange {@code ncclCommInitRank} expects. Every rank learns the same verdict:
 * an id of the wrong size fails all of them, naming it.
 */
public final class NcclUniqueIds {
  private NcclUniqueIds() {}

  /** {@code NCCL_UNIQUE_ID_BYTES} of nccl.h. */
  public static final int BYTES = 128;

  /**
   * A fresh NCCL unique id, through the binding {@link NcclAvailability} chose; throws its reason
   * where NCCL is unavailable.
   */
  public static byte[] make() {
    return NcclAvailability.get().uniqueId();
  }

  /**
   * Every rank's copy of the id rank 0 makes with {@code make} (called on rank 0 only):
   * {@code exchange(world, NcclUniqueIds::make)} on every rank of a process world.
   */
  public static byte[] exchange(ProcessWorld world, Supplier<byte[]> make) {
    Objects.requireNonNull(make, "make");
    // what rank 0 says: 0 and the id, or 1 and why it has none (so nobody is left waiting)
    byte[] mine = new byte[0];
    if (world.rank() == 0) {
      byte[] said;
      try {
        byte[] id = Objects.requireNonNull(make.get(), "unique id");
        said = new byte[id.length + 1];
        System.arraycopy(id, 0, said, 1, id.length);
      } catch (RuntimeException e) {
        byte[] why = ("rank 0 could not make the NCCL unique id: " + e).getBytes(StandardCharsets.UTF_8);
        said = new byte[why.length + 1];
        said[0] = 1;
        System.arraycopy(why, 0, said, 1, why.length);
      }
      mine = said;
    }
    List<byte[]> all = world.allGather(mine);
    byte[] said = all.get(0);
    if (said.length == 0) throw new RendezvousException("rank 0 sent no NCCL unique id");
    byte[] body = java.util.Arrays.copyOfRange(said, 1, said.length);
    if (said[0] != 0) throw new RendezvousException(new String(body, StandardCharsets.UTF_8));
    if (body.length != BYTES) {
      throw new RendezvousException("rank 0's NCCL unique id has " + body.length + " bytes, NCCL's have " + BYTES);
    }
    return body;
  }
}
