package io.moeyard.dispatch.internal;

import io.moeyard.engine.DType;
import io.moeyard.engine.transport.MessageCodec;
import io.moeyard.engine.transport.MessageReader;
import io.moeyard.engine.transport.MessageWriter;

/**
 * What each rank tells the world at the start of a dispatch: whether its input is valid, its
 * payload format, its counts (so every rank can compute every offset), how many rows its receive
 * buffer can hold (-1 = dispatch allocates it), and for the node relay: the tokens per source its
 * relay buffers hold (-1 = it sends direct), its token count and how many of its tokens go to
 * each node (null when direct), which size every node-crossing message.
 */
record Announcement(
    String problem, int hidden, DType dtype, int[] sendCounts, int[] pairsTo, int[] selectionsTo, long capacityRows,
    int relayTokens, int tokens, int[] tokensToNode) {

  static final MessageCodec<Announcement> CODEC = new MessageCodec<>() {
    @Override
    public void write(Announcement a, MessageWriter out) {
      out.putString(a.problem).putInt(a.hidden).putDType(a.dtype).putInts(a.sendCounts).putInts(a.pairsTo)
          .putInts(a.selectionsTo).putLong(a.capacityRows).putInt(a.relayTokens).putInt(a.tokens).putInts(a.tokensToNode);
    }

    @Override
    public Announcement read(MessageReader in) {
      return new Announcement(in.getString(), in.getInt(), in.getDType(), in.getInts(), in.getInts(), in.getInts(),
          in.getLong(), in.getInt(), in.getInt(), in.getInts());
    }
  };
}
