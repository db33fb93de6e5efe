package io.moeyard.cuda;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.testkit.TestSeed;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * The child JVM of {@link NcclStubTest}: NCCL through libmoeyard_cuda.so's dlopen against the stub
 * libnccl.so.2 (nccl_stub.c), on host memory. {@code probe} prints the probe's message;
 * {@code world STUB SEED} runs the checks below against the stub file STUB (found by the loader
 * through LD_LIBRARY_PATH) and prints "nccl-stub: ok", or fails with exit 1.
 */
public final class NcclStubMain {
  private NcclStubMain() {}

  public static void main(String[] args) throws Throwable {
    if (args[0].equals("probe")) {
      System.out.println(NcclAvailability.get().message());
      return;
    }
    try {
      world(Path.of(args[1]), new TestSeed(Long.parseLong(args[2])));
    } catch (Throwable t) {
      t.printStackTrace(System.out);
      System.exit(1);
    }
    System.out.println("nccl-stub: ok");
  }

  private static void world(Path stub, TestSeed seed) throws Throwable {
    NcclAvailability a = NcclAvailability.get();
    System.out.println(a.message());
    assertTrue(a.available(), a.message());
    assertEquals(NcclAvailability.Binding.MOEYARD, a.binding());
    assertEquals(22804, a.version());
    assertEquals(stub.toRealPath(), Path.of(a.library()).toRealPath(), "the file the loader found");
    try (Arena arena = Arena.ofConfined()) {
      SymbolLookup lib = SymbolLookup.libraryLookup(Path.of(a.library()), arena);
      MethodHandle liveComms = Linker.nativeLinker().downcallHandle(lib.find("stub_live_comms").orElseThrow(), FunctionDescriptor.of(JAVA_INT));
      MethodHandle groups = Linker.nativeLinker().downcallHandle(lib.find("stub_groups").orElseThrow(), FunctionDescriptor.of(JAVA_INT));

      // ids: 128 bytes, fresh each time, and the stub accepts only the last one whole
      byte[] first = NcclUniqueIds.make();
      byte[] id = NcclUniqueIds.make();
      assertEquals(NcclUniqueIds.BYTES, id.length);
      assertFalse(Arrays.equals(first, id), "two ids alike");
      MethodHandle aborts = Linker.nativeLinker().downcallHandle(lib.find("stub_aborts").orElseThrow(), FunctionDescriptor.of(JAVA_INT));
      MethodHandle failNextInit = Linker.nativeLinker().downcallHandle(lib.find("stub_fail_next_init").orElseThrow(), FunctionDescriptor.ofVoid());
      assertEquals("ncclCommInitRankConfig failed: 4 (stub: invalid argument); NCCL's last error: stub: not the unique id ncclGetUniqueId made last",
          assertThrows(CudaException.class, () -> NcclChannel.create(first, 1, 0)).getMessage());
      byte[] garbled = id.clone();
      garbled[NcclUniqueIds.BYTES - 1] ^= 1;
      assertThrows(CudaException.class, () -> NcclChannel.create(garbled, 1, 0));
      assertEquals("ncclCommInitRank failed: 4 (stub: invalid argument); NCCL's last error: stub: a world of one only, asked for rank 1 of 2",
          assertThrows(CudaException.class, () -> NcclNative.commInitRank(id, 2, 1, true)).getMessage());
      assertEquals(0, (int) liveComms.invokeExact());

      // the set-up is non-blocking (the stub refuses a short config, a bad magic or an old version):
      // a peer that never arrives ends at the timeout with the communicator aborted, and an
      // asynchronous error of the set-up is thrown with the communicator aborted too
      long t0 = System.nanoTime();
      io.moeyard.engine.CollectiveTimeoutException late = assertThrows(io.moeyard.engine.CollectiveTimeoutException.class,
          () -> NcclChannel.create(id, 2, 1, java.time.Duration.ofMillis(300)));
      long ms = (System.nanoTime() - t0) / 1_000_000;
      assertTrue(ms >= 300 && ms < 10_000, ms + " ms");
      assertTrue(late.getMessage().startsWith("rank 1 of 2: ncclCommInitRankConfig did not finish within 300 ms"), late.getMessage());
      assertEquals(1, (int) aborts.invokeExact());
      failNextInit.invokeExact();
      assertEquals("ncclCommInitRankConfig failed: 6 (stub: remote error); NCCL's last error: stub: the set-up failed on a peer",
          assertThrows(CudaException.class, () -> NcclChannel.create(id, 1, 0)).getMessage());
      assertEquals(2, (int) aborts.invokeExact());
      assertEquals(0, (int) liveComms.invokeExact(), "aborted communicators are gone");

      SplittableRandom rnd = seed.random();
      int g0 = (int) groups.invokeExact();
      try (NcclChannel ch = NcclChannel.create(id, 1, 0)) {
        assertEquals(1, (int) liveComms.invokeExact());
        // sizes: odd, one byte, a random one; on the default stream and on a made-up one (the
        // stub never dereferences it, it only checks that both sides of a pair name the same)
        int[] sizes = {(1 << 20) + 3, 1, 1 + rnd.nextInt(1 << 16)};
        int groupsSeen = 0;
        for (int n : sizes) {
          for (long stream : new long[] {0L, 0x5000L + rnd.nextInt(1 << 12) * 16L}) {
            byte[] want = new byte[n];
            rnd.nextBytes(want);
            MemorySegment src = arena.allocate(n, 16);
            MemorySegment dst = arena.allocate(n + 64L, 16);
            MemorySegment.copy(want, 0, src, JAVA_BYTE, 0, n);
            dst.fill((byte) 0x5A);
            ch.exchange(new long[] {src.address()}, new long[] {n}, new long[] {dst.address()}, new long[] {n}, stream);
            groupsSeen++;
            assertArrayEquals(want, dst.asSlice(0, n).toArray(JAVA_BYTE), n + " bytes on stream " + stream);
            for (long i = n; i < n + 64L; i++) assertEquals((byte) 0x5A, dst.get(JAVA_BYTE, i), "byte " + i + " after the receive");
          }
        }
        assertEquals(g0 + groupsSeen, (int) groups.invokeExact(), "one NCCL group per exchange");

        // nothing to move: still one (empty) group
        ch.exchange(new long[1], new long[1], new long[1], new long[1], 0);
        assertEquals(g0 + groupsSeen + 1, (int) groups.invokeExact());

        // sizes that do not pair up: the group fails as a whole, naming it, nothing is copied;
        // NCCL leaves the communicator in that error, so the channel aborts it and is closed
        MemorySegment src = arena.allocate(16);
        MemorySegment dst = arena.allocate(16);
        src.fill((byte) 7);
        dst.fill((byte) 1);
        CudaException e = assertThrows(CudaException.class,
            () -> ch.exchange(new long[] {src.address()}, new long[] {8}, new long[] {dst.address()}, new long[] {16}, 0));
        assertEquals("ncclGroupEnd failed: 5 (stub: invalid usage); NCCL's last error: stub: a send of 8 bytes meets a receive of 16",
            e.getMessage());
        for (long i = 0; i < 16; i++) assertEquals((byte) 1, dst.get(JAVA_BYTE, i));
        assertEquals(3, (int) aborts.invokeExact(), "the communicator of the failed group was aborted");
        assertEquals(0, (int) liveComms.invokeExact());
        assertThrows(IllegalStateException.class,
            () -> ch.exchange(new long[] {src.address()}, new long[] {16}, new long[] {dst.address()}, new long[] {16}, 0));
        ch.close(); // nothing left to finalize: quiet
        // a send without a receive, on a new channel; the group state was closed, so a third works
        try (NcclChannel second = NcclChannel.create(id, 1, 0)) {
          e = assertThrows(CudaException.class,
              () -> second.exchange(new long[] {src.address()}, new long[] {8}, new long[] {0}, new long[] {0}, 0));
          assertEquals("ncclGroupEnd failed: 5 (stub: invalid usage); NCCL's last error: stub: send 0 has no matching receive",
              e.getMessage());
        }
        assertEquals(4, (int) aborts.invokeExact());
        try (NcclChannel third = NcclChannel.create(id, 1, 0)) {
          third.exchange(new long[] {src.address()}, new long[] {16}, new long[] {dst.address()}, new long[] {16}, 0);
        }
        for (long i = 0; i < 16; i++) assertEquals((byte) 7, dst.get(JAVA_BYTE, i));
        assertEquals(4, (int) aborts.invokeExact(), "a clean channel is finalized and destroyed");

        // an engine's communicator: checked with ncclCommCount, used, never destroyed by us
        long comm = NcclNative.commInitRank(id, 1, 0, true);
        assertNotEquals(0L, comm);
        assertEquals(1, (int) liveComms.invokeExact());
        NcclChannel wrapped = NcclChannel.wrap(comm, 1, 0);
        dst.fill((byte) 0);
        wrapped.exchange(new long[] {src.address()}, new long[] {16}, new long[] {dst.address()}, new long[] {16}, 0);
        for (long i = 0; i < 16; i++) assertEquals((byte) 7, dst.get(JAVA_BYTE, i));
        wrapped.close();
        assertEquals(1, NcclNative.commCount(comm), "wrap's close left the engine's communicator alive");
        NcclNative.commDestroy(comm);
        assertEquals("ncclCommCount failed: 4 (stub: invalid argument); NCCL's last error: stub: ncclCommCount: unknown communicator",
            assertThrows(CudaException.class, () -> NcclNative.commCount(comm)).getMessage());
        assertEquals("ncclCommCount failed: 4 (stub: invalid argument); NCCL's last error: stub: ncclCommCount: unknown communicator",
            assertThrows(CudaException.class, () -> NcclChannel.wrap(0xDEAD0, 1, 0)).getMessage());
        assertEquals(0, (int) liveComms.invokeExact());

        // calls outside a group and of another datatype are the stub's to refuse: what the JNI
        // entry points pass through (ncclUint8, the group state) is what NCCL sees
        assertEquals("ncclSend failed: 5 (stub: invalid usage); NCCL's last error: stub: ncclSend outside a group",
            assertThrows(CudaException.class, () -> NcclNative.send(src.address(), 16, 0, comm, 0)).getMessage());
        assertEquals("ncclGroupEnd failed: 5 (stub: invalid usage); NCCL's last error: stub: ncclGroupEnd without ncclGroupStart",
            assertThrows(CudaException.class, NcclNative::groupEnd).getMessage());
      }
      assertEquals(0, (int) liveComms.invokeExact(), "nothing left alive");
      assertEquals(4, (int) aborts.invokeExact(), "the closes after the failed groups did not abort again");
    }
  }
}
