package io.moeyard.engine.rendezvous;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The store's messages: a tag, then the tag's fields, in DataOutput's big-endian encoding. A rank
 * sends one request and reads one answer, so a connection never has two messages in flight.
 */
final class Wire {
  private Wire() {}

  /** Rank to store: rank, WORLD_SIZE, LOCAL_WORLD_SIZE, configuration map. */
  static final int JOIN = 1;
  /** Rank to store: round number, blob. */
  static final int GATHER = 2;
  /** Rank to store: leaving on purpose, not a crash. */
  static final int BYE = 3;
  /**
   * Rank to store: this rank aborted the world; the reason. The only message a rank may send while
   * it waits for an answer (from another thread), and it has no answer of its own: the store fails
   * the world, so every rank, the sender included, reads a FAILED naming it.
   */
  static final int ABORT = 4;
  /**
   * Rank to store: round number (the subset's own), the subset's members (count, then world ranks
   * ascending), blob: an all-gather among those ranks only, answered with GATHERED by member.
   */
  static final int GATHER_AMONG = 5;
  /**
   * Rank to store: the world failed as this rank found it (a timeout or a death it saw itself);
   * the message, then the ranks it names (count, ranks). Like ABORT, unanswered and sendable while
   * an answer is awaited: the store fails the world with that message and those ranks.
   */
  static final int FAIL = 6;
  /** Store to rank: everybody joined and agrees. */
  static final int JOINED = 11;
  /** Store to rank: every rank's blob of the round, by rank. */
  static final int GATHERED = 12;
  /** Store to rank: the world failed; the message says why. */
  static final int FAILED = 13;

  /** Blobs carry handles and ids, not tensors; a bigger length is a corrupt or foreign stream. */
  static final int MAX_BLOB = 64 << 20;

  /** Characters of an abort's reason that travel: the store's FAILED answer is one writeUTF (64 KiB). */
  static final int MAX_REASON = 4_000;

  /** {@code why}, cut to {@link #MAX_REASON} characters. */
  static String reason(String why) {
    return why.length() <= MAX_REASON ? why : why.substring(0, MAX_REASON) + "...";
  }

  static void writeMap(DataOutputStream out, Map<String, String> map) throws IOException {
    out.writeInt(map.size());
    for (Map.Entry<String, String> e : map.entrySet()) {
      out.writeUTF(e.getKey());
      out.writeUTF(e.getValue());
    }
  }

  static Map<String, String> readMap(DataInputStream in) throws IOException {
    int n = in.readInt();
    if (n < 0 || n > 10_000) throw new IOException("bad configuration size " + n);
    Map<String, String> map = new LinkedHashMap<>();
    for (int i = 0; i < n; i++) map.put(in.readUTF(), in.readUTF());
    return map;
  }

  static void writeRanks(DataOutputStream out, int[] ranks) throws IOException {
    out.writeInt(ranks.length);
    for (int r : ranks) out.writeInt(r);
  }

  /** At most {@code worldSize} ranks, each in [0, worldSize). */
  static int[] readRanks(DataInputStream in, int worldSize) throws IOException {
    int n = in.readInt();
    if (n < 0 || n > worldSize) throw new IOException("bad rank count " + n);
    int[] ranks = new int[n];
    for (int i = 0; i < n; i++) {
      ranks[i] = in.readInt();
      if (ranks[i] < 0 || ranks[i] >= worldSize) throw new IOException("bad rank " + ranks[i]);
    }
    return ranks;
  }

  static void writeBlob(DataOutputStream out, byte[] blob) throws IOException {
    out.writeInt(blob.length);
    out.write(blob);
  }

  static byte[] readBlob(DataInputStream in) throws IOException {
    int n = in.readInt();
    if (n < 0 || n > MAX_BLOB) throw new IOException("bad blob length " + n);
    return in.readNBytes(n);
  }
}
