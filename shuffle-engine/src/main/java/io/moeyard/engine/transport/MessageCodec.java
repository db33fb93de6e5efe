package io.moeyard.engine.transport;

/**
 * How a collective's small per-call message ({@link Transport#allGather(Object, MessageCodec)})
 * crosses a process boundary: a compact hand-rolled encoding (moeyard's wire format; it never
 * outlives one job, so it carries no version). Segments are written as descriptors that the
 * receiving process resolves to its own mapping of the owner's shared memory.
 */
public interface MessageCodec<T> {
  void write(T value, MessageWriter out);

  T read(MessageReader in);

  /**
   * How process transports carry {@link Transport#allGather(Object)}: the plain values null (a
   * barrier), Boolean, Integer, Long, String, int[], long[], byte[], as a tag then the value;
   * anything else needs a codec of its own, and writing it fails naming its class.
   */
  MessageCodec<Object> PLAIN = new MessageCodec<>() {
    @Override
    public void write(Object v, MessageWriter out) {
      switch (v) {
        case null -> out.putInt(0);
        case Boolean b -> out.putInt(1).putBoolean(b);
        case Integer i -> out.putInt(2).putInt(i);
        case Long l -> out.putInt(3).putLong(l);
        case String s -> out.putInt(4).putString(s);
        case int[] a -> out.putInt(5).putInts(a);
        case long[] a -> out.putInt(6).putLongs(a);
        case byte[] a -> out.putInt(7).putBytes(a);
        default -> throw new IllegalArgumentException(
            "a process transport needs a MessageCodec for " + v.getClass().getName());
      }
    }

    @Override
    public Object read(MessageReader in) {
      return switch (in.getInt()) {
        case 0 -> null;
        case 1 -> in.getBoolean();
        case 2 -> in.getInt();
        case 3 -> in.getLong();
        case 4 -> in.getString();
        case 5 -> in.getInts();
        case 6 -> in.getLongs();
        case 7 -> in.getBytes();
        default -> throw new IllegalStateException("corrupt message");
      };
    }
  };
}
