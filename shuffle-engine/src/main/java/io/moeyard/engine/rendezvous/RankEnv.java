package io.moeyard.engine.rendezvous;

import io.moeyard.engine.Topology;
import java.util.Map;

/**
 * Where this process stands in its world, as torchrun (and {@code moeyard launch}) describe it in
 * the environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
 * Ranks are numbered node by node, so a node holds LOCAL_WORLD_SIZE consecutive ranks; the
 * node-level path relies on that to pair ranks with the same local index across nodes.
 */
public record RankEnv(int rank, int worldSize, int localRank, int localWorldSize, String masterAddr, int masterPort) {
  public RankEnv {
    if (worldSize < 1) throw new RendezvousException("WORLD_SIZE=" + worldSize + " must be at least 1");
    if (rank < 0 || rank >= worldSize) {
      throw new RendezvousException("RANK=" + rank + " is outside [0, WORLD_SIZE=" + worldSize + ")");
    }
    if (localWorldSize < 1 || worldSize % localWorldSize != 0) {
      throw new RendezvousException("WORLD_SIZE=" + worldSize + " is not a multiple of LOCAL_WORLD_SIZE=" + localWorldSize
          + " (every node must hold the same number of ranks)");
    }
    if (localRank != rank % localWorldSize) {
      throw new RendezvousException("LOCAL_RANK=" + localRank + " does not match RANK=" + rank + " with LOCAL_WORLD_SIZE="
          + localWorldSize + " (ranks are numbered node by node, so it should be " + rank % localWorldSize + ")");
    }
    if (masterAddr == null || masterAddr.isBlank()) throw new RendezvousException("MASTER_ADDR is empty");
    if (masterPort < 1 || masterPort > 65535) throw new RendezvousException("MASTER_PORT=" + masterPort + " is outside [1, 65535]");
  }

  /** This process's place, read from its environment. */
  public static RankEnv fromEnv() {
    return fromEnv(System.getenv());
  }

  /**
   * Reads the torchrun variables from {@code env}. RANK, WORLD_SIZE and MASTER_PORT are required;
   * a world without LOCAL_* is one node, and MASTER_ADDR defaults to the loopback address.
   */
  public static RankEnv fromEnv(Map<String, String> env) {
    int worldSize = required(env, "WORLD_SIZE");
    int rank = required(env, "RANK");
    int localWorldSize = env.containsKey("LOCAL_WORLD_SIZE") ? required(env, "LOCAL_WORLD_SIZE") : worldSize;
    int localRank = env.containsKey("LOCAL_RANK") ? required(env, "LOCAL_RANK") : rank % Math.max(1, localWorldSize);
    String addr = env.getOrDefault("MASTER_ADDR", "127.0.0.1");
    return new RankEnv(rank, worldSize, localRank, localWorldSize, addr, required(env, "MASTER_PORT"));
  }

  private static int required(Map<String, String> env, String name) {
    String v = env.get(name);
    if (v == null) throw new RendezvousException(name + " is not set (moeyard launch and torchrun set it for every rank)");
    try {
      return Integer.parseInt(v.strip());
    } catch (NumberFormatException e) {
      throw new RendezvousException(name + "='" + v + "' is not an integer");
    }
  }

  public int nodes() {
    return worldSize / localWorldSize;
  }

  public int node() {
    return rank / localWorldSize;
  }

  public Topology topology() {
    return new Topology(nodes(), localWorldSize);
  }

  /** The variables that describe {@code rank} of a world shaped like this one, for a child process. */
  public static Map<String, String> variables(int rank, int worldSize, int localWorldSize, String masterAddr, int masterPort) {
    return Map.of(
        "RANK", Integer.toString(rank),
        "WORLD_SIZE", Integer.toString(worldSize),
        "LOCAL_RANK", Integer.toString(rank % localWorldSize),
        "LOCAL_WORLD_SIZE", Integer.toString(localWorldSize),
        "GROUP_RANK", Integer.toString(rank / localWorldSize),
        "MASTER_ADDR", masterAddr,
        "MASTER_PORT", Integer.toString(masterPort));
  }
}
