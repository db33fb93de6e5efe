package io.moeyard.cuda;

import io.moeyard.engine.testkit.TestSeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.rendezvous.RendezvousException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The NCCL probe and the unique-id exchange. Here (no GPU, no libnccl.so.2, NCCL's Java bindings on
 * the test class path, their natives not) the probe must report NCCL unavailable with both
 * bindings' reasons (the loader's text for libnccl.so.2 first) and never throw, and every entry
 * point of libmoeyard_cuda.so's NCCL glue must say why instead of calling anything; where NCCL
 * loads it must report its version and binding. The exchange runs on a real process rendezvous (its
 * ranks on threads) with ids made up by the test: the exchange, not NCCL, is under test. The
 * dlopen binding against a stub libnccl is {@link NcclStubTest}.
 */
class NcclTest {
  private static final String NO_BINDINGS =
      "; and NCCL's Java bindings (org.bytedeco:cuda, org.bytedeco.cuda.global.nccl) are not on the class path";

  @Test
  void probeReportsAReasonOrAVersionAndNeverThrows() {
    NcclAvailability a = NcclAvailability.get();
    System.out.println("NcclTest: " + a.message());
    assertTrue(a == NcclAvailability.get(), "probed once");
    if (a.available()) {
      assertTrue(a.version() >= 20000, "version " + a.version());
      assertTrue(a.binding() != null);
      assertEquals(a.binding() == NcclAvailability.Binding.MOEYARD, a.library() != null, a.message());
      assertEquals(NcclUniqueIds.BYTES, NcclUniqueIds.make().length);
    } else {
      assertTrue(a.message().startsWith(NcclAvailability.UNAVAILABLE), a.message());
      assertTrue(a.reason().contains(NcclNative.SONAME), a.reason());
      assertTrue(a.reason().contains("; and NCCL's Java bindings "), a.reason());
      assertEquals(0, a.version());
      assertEquals(null, a.binding());
      assertEquals(null, a.library());
      CudaUnavailableException e = assertThrows(CudaUnavailableException.class, NcclUniqueIds::make);
      assertEquals(a.message(), e.getMessage());
    }
  }

  /**
   * Where the library loads and libnccl.so.2 is nowhere on the loader's path (this machine, CI),
   * the reason is the loader's own text, then how to point at NCCL, then the bindings' failure.
   */
  @Test
  void withoutLibncclTheReasonIsTheLoadersText() {
    NativeTestSupport.requireLibrary();
    NcclAvailability a = NcclAvailability.get();
    Assumptions.assumeFalse(a.available(), "NCCL loads here");
    Assumptions.assumeTrue(System.getProperty(NcclNative.PROPERTY) == null, "-D" + NcclNative.PROPERTY + " is set");
    assertTrue(a.reason().startsWith("dlopen(\"libnccl.so.2\") failed: libnccl.so.2: cannot open shared object file: "
        + "No such file or directory (put the folder holding libnccl.so.2 on LD_LIBRARY_PATH, or name the file with "
        + "-Dmoeyard.nccl.lib=FILE); and NCCL's Java bindings "), a.reason());
  }

  /** Every NCCL entry point of the library, called without a loaded libnccl: the load's reason, no call, no crash. */
  @Test
  void withoutLibncclEveryEntryPointSaysWhy() throws Exception {
    NativeTestSupport.requireLibrary();
    NcclAvailability a = NcclAvailability.get();
    Assumptions.assumeFalse(a.binding() == NcclAvailability.Binding.MOEYARD, "libnccl.so.2 loads here");
    String why = NcclNative.load(null);
    assertTrue(why != null && a.reason().startsWith(why), why + " / " + a.reason());
    assertEquals(null, NcclNative.library());
    int called = 0;
    for (Method m : NcclNative.class.getDeclaredMethods()) {
      if (!Modifier.isNative(m.getModifiers()) || m.getName().equals("load") || m.getName().equals("library")) continue;
      Object[] args = new Object[m.getParameterCount()];
      Class<?>[] types = m.getParameterTypes();
      for (int i = 0; i < args.length; i++) args[i] = types[i] == int.class ? (Object) 0 : types[i] == long.class ? (Object) 0L
          : types[i] == boolean.class ? (Object) false : null;
      InvocationTargetException e = assertThrows(InvocationTargetException.class, () -> m.invoke(null, args), m.getName());
      assertInstanceOf(IllegalStateException.class, e.getCause(), m.getName());
      assertEquals("libnccl.so.2 is not loaded: " + why, e.getCause().getMessage(), m.getName());
      called++;
    }
    assertEquals(12, called, "NcclNative's NCCL calls");
  }

  /** Without the bindings on the class path (as in the moeyard command, which does not pull them). */
  @Test
  void withoutTheBindingsTheProbeSaysSo() throws Exception {
    URL classes = Path.of(NcclAvailability.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toUri().toURL();
    try (URLClassLoader alone = new URLClassLoader(new URL[] {classes}, ClassLoader.getPlatformClassLoader())) {
      Class<?> c = Class.forName(NcclAvailability.class.getName(), true, alone);
      Object a = c.getMethod("get").invoke(null);
      String msg = (String) c.getMethod("message").invoke(a);
      if ((Boolean) c.getMethod("available").invoke(a)) {
        assertTrue(msg.contains("opened by libmoeyard_cuda.so"), msg); // NCCL loads here: our own binding, not the absent ones
        return;
      }
      assertTrue(msg.startsWith(NcclAvailability.UNAVAILABLE), msg);
      assertTrue(msg.contains(NcclNative.SONAME), msg);
      assertTrue(msg.endsWith(NO_BINDINGS), msg);
    }
  }

  @Test
  void everyRankGetsRankZerosId() throws Exception {
    byte[] id = new byte[NcclUniqueIds.BYTES];
    new Random(TestSeed.fresh().value()).nextBytes(id);
    List<Object> got = ranks(3, () -> id.clone());
    for (Object o : got) assertArrayEquals(id, (byte[]) o);
  }

  @Test
  void aBadIdOrAFailureOnRankZeroFailsEveryRankNamingIt() throws Exception {
    for (Object o : ranks(3, () -> new byte[5])) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertEquals("rank 0's NCCL unique id has 5 bytes, NCCL's have 128", e.getMessage());
    }
    for (Object o : ranks(2, () -> {
      throw new IllegalStateException("no NCCL here");
    })) {
      RendezvousException e = assertInstanceOf(RendezvousException.class, o);
      assertEquals("rank 0 could not make the NCCL unique id: java.lang.IllegalStateException: no NCCL here", e.getMessage());
    }
  }

  /** Each rank of a process world of {@code n} on its own thread: the exchanged id or what it threw. */
  private static List<Object> ranks(int n, Supplier<byte[]> make) throws Exception {
    return NativeTestSupport.ranks(n, r -> w -> NcclUniqueIds.exchange(w, make));
  }
}
