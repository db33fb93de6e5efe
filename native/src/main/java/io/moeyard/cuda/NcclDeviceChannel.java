package io.moeyard.cuda;

/**
 * The {@link DeviceChannel} of a world whose ranks are processes, on one node or several: the
 * exchange is one NCCL group on the caller's stream ({@link NcclChannel#exchange}). NCCL cannot
 * check sizes pairwise; the node-level path computes both ends' sizes from the same announcements.
 * Owns the {@link NcclChannel} it is given (closing this closes it; an engine's communicator
 * wrapped by {@link NcclChannel#wrap} stays open, as that class says).
 */
final class NcclDeviceChannel implements DeviceChannel {
  private final NcclChannel channel;

  NcclDeviceChannel(NcclChannel channel) {
    this.channel = java.util.Objects.requireNonNull(channel, "channel");
  }

  @Override
  public void exchange(long[] sendAddress, long[] sendBytes, long[] recvAddress, long[] recvBytes, long stream) {
    channel.exchange(sendAddress, sendBytes, recvAddress, recvBytes, stream);
  }

  @Override
  public void close() {
    channel.close();
  }
}
