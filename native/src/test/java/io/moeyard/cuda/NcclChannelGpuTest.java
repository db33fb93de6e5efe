package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.moeyard.engine.testkit.TestSeed;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@link NcclChannel} on the GPU, a world of one: a buffer sent to itself through one grouped
 * exchange arrives intact, on the default stream and on a stream of this module's own runtime.
 * Skipped where there is no GPU or NCCL cannot be loaded. Tagged {@code gpu-step}: bench/gpu/run.sh
 * runs it as a step of its own.
 */
@Tag(GpuTestMain.OWN_STEP)
class NcclChannelGpuTest {

  @BeforeEach
  void gpuAndNccl() {
    NativeTestSupport.requireGpuAndNccl();
  }

  @Test
  void aWorldOfOneSendsABufferToItself() {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    seed.check(() -> {
      int n = (1 << 20) + 3; // not a multiple of 16 bytes
      byte[] want = new byte[n];
      rnd.nextBytes(want);
      long stream = NativeKernels.streamCreate();
      try (NcclChannel ch = NcclChannel.create(NcclUniqueIds.make(), 1, 0);
          DeviceBuffer src = DeviceBuffer.allocate(n);
          DeviceBuffer dst = DeviceBuffer.allocate(n)) {
        src.upload(want);
        for (long st : new long[] {0L, stream}) {
          dst.fill(0);
          ch.exchange(new long[] {src.address()}, new long[] {n}, new long[] {dst.address()}, new long[] {n}, st);
          NativeKernels.deviceSynchronize();
          assertArrayEquals(want, dst.downloadBytes(n), "stream " + st);
        }
        ch.exchange(new long[1], new long[1], new long[1], new long[1], stream); // nothing to move
        NativeKernels.deviceSynchronize();
      } finally {
        NativeKernels.streamDestroy(stream);
      }
    });
  }
}
