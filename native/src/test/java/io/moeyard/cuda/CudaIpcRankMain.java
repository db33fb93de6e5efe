package io.moeyard.cuda;

import io.moeyard.engine.rendezvous.ProcessWorld;
import io.moeyard.engine.rendezvous.RankEnv;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * One rank of {@link CudaIpcGpuTest}, a process of its own (torchrun variables set): its buffer
 * holds one chunk per rank and one 8-byte slot per rank. It shares the buffer through
 * {@link CudaIpc}, then writes into every rank's buffer (its own included, peers in rotated order):
 * its chunk with {@code cudaMemcpyAsync} and its slot with a kernel ({@code store_pointer}). After
 * a barrier each rank checks that its own buffer holds every rank's chunk and slot. Prints
 * {@code cuda-ipc rank R: ok} and exits 0, or names the first wrong byte and exits 1; where CUDA
 * IPC is unavailable it says so after a barrier and exits 3.
 *
 * <p>Arguments: seed, chunk bytes.
 */
public final class CudaIpcRankMain {
  private CudaIpcRankMain() {}

  static byte[] chunk(long seed, int rank, int bytes) {
    byte[] b = new byte[bytes];
    new SplittableRandom(seed * 31 + rank).nextBytes(b);
    return b;
  }

  static long slot(long seed, int rank) {
    return new SplittableRandom(seed * 17 + rank).nextLong() | 1L;
  }

  public static void main(String[] args) {
    long seed = Long.parseLong(args[0]);
    int chunk = Integer.parseInt(args[1]);
    RankEnv env = RankEnv.fromEnv();
    int me = env.rank();
    int n = env.worldSize();
    String verdict;
    try (ProcessWorld world = ProcessWorld.join(env, Map.of("test", "cuda-ipc"), Duration.ofSeconds(30))) {
      CudaIpc.Availability a = CudaIpc.availability();
      if (a.available()) {
        verdict = run(world, seed, chunk);
      } else {
        world.barrier(); // every rank got this far: the launch and the rendezvous work
        System.out.println("cuda-ipc rank " + me + ": " + a.message());
        System.exit(3);
        return;
      }
    } catch (RuntimeException e) {
      verdict = e.toString();
    }
    System.out.println("cuda-ipc rank " + me + ": " + verdict);
    System.exit(verdict.equals("ok") ? 0 : 1);
  }

  private static String run(ProcessWorld world, long seed, int chunk) {
    int me = world.rank();
    int n = world.size();
    try (DeviceBuffer mine = DeviceBuffer.allocate((long) n * chunk + 8L * n);
        DeviceBuffer source = DeviceBuffer.allocate(chunk)) {
      mine.fill(0xEE);
      source.upload(chunk(seed, me, chunk));
      try (CudaIpc ipc = CudaIpc.open(world, mine)) {
        for (int i = 1; i <= n; i++) {
          int p = (me + i) % n;
          long at = ipc.address(p);
          NativeKernels.copyDeviceToDeviceAsync(at + (long) me * chunk, source.address(), chunk, 0L);
          NativeKernels.storePointer(at + (long) n * chunk, me, slot(seed, me), 0L);
        }
        NativeKernels.deviceSynchronize();
        world.barrier(); // every rank's stores are done
        return check(mine.downloadBytes(n * chunk + 8 * n), seed, me, n, chunk);
      }
    }
  }

  private static String check(byte[] got, long seed, int me, int n, int chunk) {
    for (int s = 0; s < n; s++) {
      byte[] want = chunk(seed, s, chunk);
      byte[] have = Arrays.copyOfRange(got, s * chunk, (s + 1) * chunk);
      int i = Arrays.mismatch(want, have);
      if (i >= 0) return "rank " + s + "'s chunk in rank " + me + "'s buffer differs at byte " + i + ": " + have[i] + " instead of " + want[i];
      long v = java.nio.ByteBuffer.wrap(got, n * chunk + 8 * s, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
      if (v != slot(seed, s)) return "rank " + s + "'s slot in rank " + me + "'s buffer holds " + Long.toHexString(v);
    }
    return "ok";
  }
}
