package io.moeyard.cuda;

/**
 * A {@link DeviceChannel} for ranks on more than one machine: messages to and from the ranks this
 * process reaches through device memory (its machine's) go through one channel (peer copies), the
 * others through another (NCCL, or host staging). Both are collectives on every rank, called in
 * the same order; each sees only its own peers' entries (the rest 0), and since "same machine" is
 * symmetric both ends of every message agree on which channel carries it. Where every node is a
 * machine of its own no message stays on a machine, and the near channel (a collective of its own
 * every exchange) is skipped by every rank alike. Owns both.
 */
final class SplitChannel implements DeviceChannel {
  private final DeviceChannel near;
  private final DeviceChannel far;
  private final boolean[] reach;
  /** False where no node shares a machine with another: every message crosses machines and the near channel is never called. */
  private final boolean nearUsed;
  /** The split arguments, reused by every exchange: [near, far][send address, send bytes, recv address, recv bytes]. */
  private final long[][][] parts;

  SplitChannel(DeviceChannel near, DeviceChannel far, boolean[] reach, boolean nearUsed) {
    this.near = near;
    this.far = far;
    this.reach = reach.clone();
    this.nearUsed = nearUsed;
    this.parts = new long[2][4][reach.length];
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    int n = reach.length;
    if (sendAddress.length != n || sendBytes.length != n || recvAddress.length != n || recvBytes.length != n) {
      throw new IllegalArgumentException("a split channel of " + n + " ranks got arguments for " + sendAddress.length);
    }
    for (int q = 0; q < n; q++) {
      int mine = reach[q] ? 0 : 1;
      int other = 1 - mine;
      parts[mine][0][q] = sendAddress[q];
      parts[mine][1][q] = sendBytes[q];
      parts[mine][2][q] = recvAddress[q];
      parts[mine][3][q] = recvBytes[q];
      for (int k = 0; k < 4; k++) parts[other][k][q] = 0L;
    }
    if (nearUsed) {
      near.exchange(parts[0][0], parts[0][1], parts[0][2], parts[0][3], stream);
    } else {
      for (int q = 0; q < n; q++) {
        if (parts[0][1][q] != 0 || parts[0][3][q] != 0) {
          // a planning error, not bad input: the world was told no message stays on a machine
          throw new IllegalStateException("a message between this rank and rank " + q + " of its own machine, where every"
              + " node is a machine of its own");
        }
      }
    }
    far.exchange(parts[1][0], parts[1][1], parts[1][2], parts[1][3], stream);
  }

  @Override
  public void abandon() {
    RuntimeException err = Release.attempt(null, near::abandon);
    err = Release.attempt(err, far::abandon);
    if (err != null) throw err;
  }

  @Override
  public void close() {
    RuntimeException err = Release.attempt(null, near::close);
    err = Release.attempt(err, far::close);
    if (err != null) throw err;
  }
}
