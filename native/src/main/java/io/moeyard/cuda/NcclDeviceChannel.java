package io.moeyard.cuda;

/**
 * The {@link DeviceChannel} of a world whose ranks are processes, on one node or several: the
 * exchange is one NCCL group on the caller's stream ({@link NcclChannel#exchange}). NCCL cannot
 * check sizes pairwise; the node-level path computes both ends' sizes from the same announcements.
 * Owns the {@link NcclChannel} it is given (closing this closes it), unless it is the engine's
 * ({@link #engines}), which stays the engine's to close. {@code watch} (the world's
 * {@code Transport.checkPeers}) is looked at while an enqueue is waited for.
 */
final class NcclDeviceChannel implements DeviceChannel {
  private final NcclChannel channel;
  private final boolean owned;
  private final Runnable watch;

  NcclDeviceChannel(NcclChannel channel, Runnable watch) {
    this(channel, true, watch);
  }

  private NcclDeviceChannel(NcclChannel channel, boolean owned, Runnable watch) {
    this.channel = java.util.Objects.requireNonNull(channel, "channel");
    this.owned = owned;
    this.watch = java.util.Objects.requireNonNull(watch, "watch");
  }

  /** Over the engine's channel, which closing this leaves open. */
  static NcclDeviceChannel engines(NcclChannel channel, Runnable watch) {
    return new NcclDeviceChannel(channel, false, watch);
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    channel.exchange(sendAddress, sendBytes, recvAddress, recvBytes, stream, watch);
  }

  @Override
  public void close() {
    if (owned) channel.close();
  }

  @Override
  public void abandon() {
    if (owned) channel.abort();
  }
}
