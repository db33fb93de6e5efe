package io.moeyard.engine.transport;

import io.moeyard.engine.CollectiveException;
import java.util.function.Function;

/**
 * {@link Transport#allGather(Object, MessageCodec)} for transports between processes, around
 * whatever exchanges their bytes: every rank encodes its message, the bytes go round, and each
 * rank decodes its peers' (its own entry is its object itself). A message a rank cannot send (the
 * codec refuses it, it names a segment no peer can reach, it exceeds what the exchange carries)
 * travels as a refusal instead, so that every rank fails alike naming it and the world goes on,
 * rather than the sender alone failing while its peers wait for it until the timeout.
 */
public final class EncodedGather {
  /** First int of a message: the rest is the message (transports' own exchanges use the same mark). */
  public static final int OK = 0;
  /** First int of a refusal: the rest is its text. */
  public static final int REFUSED = 1;

  private EncodedGather() {}

  /**
   * Rank {@code me}'s all-gather of {@code mine}: {@code segments} describes and resolves the
   * segments messages name, {@code maxBytes} is the most one encoded message may hold (the store's
   * limit: where it carries a transport's messages, or the too big ones of its shared memory), and
   * {@code exchange} takes this rank's bytes and returns every rank's, by rank (a collective).
   */
  public static <T> Object[] allGather(int me, T mine, MessageCodec<T> codec, SegmentTable segments, long maxBytes,
      Function<byte[], byte[][]> exchange) {
    RuntimeException problem = null;
    byte[] blob;
    try {
      MessageWriter w = new MessageWriter(segments).putInt(OK);
      codec.write(mine, w);
      blob = w.toBytes();
      if (blob.length > maxBytes) {
        throw new IllegalArgumentException("a message of " + blob.length + " bytes exceeds the store's limit of " + maxBytes);
      }
    } catch (RuntimeException e) {
      problem = e;
      blob = refusal("rank " + me + ": " + (e.getMessage() == null ? e.toString() : e.getMessage()));
    }
    byte[][] all = exchange.apply(blob);
    MessageReader[] readers = new MessageReader[all.length];
    for (int p = 0; p < readers.length; p++) {
      readers[p] = new MessageReader(segments, all[p], p);
      if (readers[p].getInt() == REFUSED) throw new CollectiveException(readers[p].getString(), p == me ? problem : null);
    }
    Object[] out = new Object[readers.length];
    for (int p = 0; p < readers.length; p++) {
      if (p == me) {
        out[p] = mine;
        continue;
      }
      try {
        out[p] = codec.read(readers[p]);
      } catch (RuntimeException e) {
        throw new CollectiveException("rank " + me + " cannot read rank " + p + "'s message (do all ranks call the same "
            + "collective with the same codec?): " + e, e);
      }
    }
    return out;
  }

  /** The bytes of a refusal saying {@code why}, which every rank that reads it throws. */
  public static byte[] refusal(String why) {
    return new MessageWriter(null).putInt(REFUSED).putString(why).toBytes();
  }

  /** A refusal's text, or null when {@code blob} is a message. */
  public static String refused(byte[] blob) {
    MessageReader in = new MessageReader(null, blob, -1);
    return in.getInt() == REFUSED ? in.getString() : null;
  }
}
