package io.moeyard.engine.shm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;
import java.util.concurrent.locks.LockSupport;

/**
 * Linux futexes on a 32-bit word of a shared mapping, so that a process waiting for its peers
 * sleeps in the kernel and the peer that publishes wakes it at once, as a parked thread of one JVM
 * is woken by its peer's unpark. Without them (not Linux, native access denied,
 * {@code -Dmoeyard.futex.disable=true}) {@link #await} sleeps its timeout and {@link #wake} does
 * nothing: waiters then find the change when they wake, as before.
 *
 * <p>Shared (not {@code FUTEX_PRIVATE}) operations, because the word lives in a file that other
 * processes map; the kernel keys such futexes by the page, not the address.
 */
final class Futex {
  private static final long SYS_FUTEX = 202; // x86-64; other architectures fall back
  private static final long FUTEX_WAIT = 0;
  private static final long FUTEX_WAKE = 1;
  private static final MethodHandle SYSCALL = lookup();

  private Futex() {}

  private static MethodHandle lookup() {
    String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
    String arch = System.getProperty("os.arch", "");
    if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) return null;
    if (Boolean.getBoolean("moeyard.futex.disable")) return null;
    try {
      Linker linker = Linker.nativeLinker();
      // long syscall(long number, ...): every variadic argument passed as a full register
      FunctionDescriptor fd = FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS,
          ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG);
      return linker.downcallHandle(linker.defaultLookup().find("syscall").orElseThrow(), fd, Linker.Option.firstVariadicArg(1));
    } catch (RuntimeException | LinkageError e) {
      return null;
    }
  }

  static boolean available() {
    return SYSCALL != null;
  }

  /**
   * Sleeps while the int at {@code word} still holds {@code expected}, at most {@code nanos}
   * (spurious and early returns are normal: callers re-check their condition). {@code timespec}
   * is 16 bytes of the caller's, reused.
   */
  static void await(MemorySegment word, int expected, long nanos, MemorySegment timespec) {
    if (SYSCALL == null) {
      LockSupport.parkNanos(nanos);
      return;
    }
    timespec.set(ValueLayout.JAVA_LONG, 0, nanos / 1_000_000_000L);
    timespec.set(ValueLayout.JAVA_LONG, 8, nanos % 1_000_000_000L);
    try {
      long ignored = (long) SYSCALL.invokeExact(SYS_FUTEX, word, FUTEX_WAIT, (long) expected, timespec, MemorySegment.NULL, 0L);
    } catch (Throwable e) {
      LockSupport.parkNanos(nanos);
    }
  }

  /** Wakes every process sleeping on {@code word}. */
  static void wake(MemorySegment word) {
    if (SYSCALL == null) return;
    try {
      long ignored = (long) SYSCALL.invokeExact(SYS_FUTEX, word, FUTEX_WAKE, (long) Integer.MAX_VALUE, MemorySegment.NULL,
          MemorySegment.NULL, 0L);
    } catch (Throwable e) {
      // waiters still wake at their timeout
    }
  }

  /** 16 bytes for a relative {@code struct timespec}, freed with {@code arena}. */
  static MemorySegment timespec(Arena arena) {
    return arena.allocate(16, 8);
  }
}
