package io.moeyard.engine.shm;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Reserves a shared-memory file's pages when it is made, as NCCL does for its own: a file that is
 * only sized (sparse) gets its pages when they are first touched, and where {@code /dev/shm} is
 * too small for them (a container's default is 64 MiB) that touch kills the process with a bus
 * error in the middle of a collective, on one rank, for the others to find as a dead peer. Reserved
 * up front, a shortage is one clear error, on every rank, before anything runs. A request larger
 * than the file system's free space is refused without allocating anything; the rest is
 * {@code posix_fallocate}, which the kernel undoes when it fails. Where the call is not available
 * (not Linux, native access denied, {@code -Dmoeyard.shm.reserve=false}) the free-space check
 * alone remains.
 */
final class ShmReserve {
  private static final int O_RDWR = 2;
  private static final MethodHandle OPEN;
  private static final MethodHandle FALLOCATE;
  private static final MethodHandle CLOSE;

  static {
    MethodHandle open = null;
    MethodHandle fallocate = null;
    MethodHandle close = null;
    String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
    if (os.contains("linux") && !"false".equals(System.getProperty("moeyard.shm.reserve"))) {
      try {
        Linker linker = Linker.nativeLinker();
        var libc = linker.defaultLookup();
        open = linker.downcallHandle(libc.find("open").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
            Linker.Option.firstVariadicArg(2));
        fallocate = linker.downcallHandle(libc.find("posix_fallocate").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
        close = linker.downcallHandle(libc.find("close").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
      } catch (RuntimeException | LinkageError e) {
        open = fallocate = close = null;
      }
    }
    OPEN = open;
    FALLOCATE = fallocate;
    CLOSE = close;
  }

  private ShmReserve() {}

  /** Whether the pages are reserved, not only counted against the free space. */
  static boolean reserves() {
    return FALLOCATE != null;
  }

  /**
   * Makes sure the first {@code bytes} of {@code file} (already sized) have pages behind them;
   * throws, saying how much the file system has free and what to do, when they cannot.
   */
  static void reserve(Path file, long bytes) throws IOException {
    Path dir = file.toAbsolutePath().getParent();
    long free = Files.getFileStore(dir).getUsableSpace();
    if (bytes > free) throw new IOException(shortage(dir, bytes, free));
    if (FALLOCATE == null) return;
    int rc;
    try (Arena arena = Arena.ofConfined()) {
      int fd = (int) OPEN.invokeExact(arena.allocateFrom(file.toAbsolutePath().toString()), O_RDWR, 0);
      if (fd < 0) throw new IOException("cannot open " + file + " to reserve its pages");
      try {
        rc = (int) FALLOCATE.invokeExact(fd, 0L, bytes);
      } finally {
        int ignored = (int) CLOSE.invokeExact(fd);
      }
    } catch (IOException e) {
      throw e;
    } catch (Throwable t) {
      return; // the call itself is unusable here: the free-space check above stands
    }
    if (rc == 28 /* ENOSPC */) throw new IOException(shortage(dir, bytes, Files.getFileStore(dir).getUsableSpace()));
    if (rc != 0) throw new IOException("posix_fallocate of " + bytes + " bytes failed with error " + rc);
  }

  private static String shortage(Path dir, long bytes, long free) {
    return String.format(Locale.ROOT, "%s has %.1f MiB free, this file needs %.1f MiB (shared memory is sized when a"
        + " communicator is built: a container's /dev/shm is often 64 MiB; raise it, e.g. docker run --shm-size, or size the"
        + " communicator smaller: CommConfig.withReceiveRows)", dir, free / 1048576.0, bytes / 1048576.0);
  }
}
