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
}
