package io.moeyard.engine;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;

/**
 * The CPU backend's native helper, {@code libmoeyard_host.so}: small C functions for what Java
 * cannot do fast (streaming stores, BF16 rounding instructions), built with this module by
 * {@code build-host.sh} from {@code src/main/c} and loaded through the FFM API. It is optional:
 * without it (no C compiler at build time, another OS, native access denied) every caller has a
 * Java path that writes the same bytes. {@code -Dmoeyard.host.lib=PATH} loads another build;
 * each caller also has its own switch to turn its use off.
 */
public final class HostLibrary {
  private static final String RESOURCE = "/native/linux-x86_64/libmoeyard_host.so";
  private static final SymbolLookup LOOKUP = load();

  private HostLibrary() {}

  private static SymbolLookup load() {
    try {
      Path lib;
      String local = System.getProperty("moeyard.host.lib");
      if (local != null) {
        lib = Path.of(local);
      } else {
        try (InputStream in = HostLibrary.class.getResourceAsStream(RESOURCE)) {
          if (in == null) return null;
          Path dir = Path.of(System.getProperty("java.io.tmpdir"));
          Files.createDirectories(dir);
          lib = Files.createTempFile(dir, "libmoeyard_host", ".so");
          lib.toFile().deleteOnExit();
          Files.copy(in, lib, StandardCopyOption.REPLACE_EXISTING);
        }
      }
      return SymbolLookup.libraryLookup(lib, Arena.global());
    } catch (IOException | RuntimeException | LinkageError e) {
      return null;
    }
  }

  /** True when the library loaded. */
  public static boolean loaded() {
    return LOOKUP != null;
  }

  /**
   * A downcall handle for {@code symbol}, or empty when the library or the symbol is missing, or
   * native access is denied.
   */
  public static Optional<MethodHandle> downcall(String symbol, FunctionDescriptor descriptor, Linker.Option... options) {
    if (LOOKUP == null) return Optional.empty();
    try {
      Optional<MemorySegment> address = LOOKUP.find(symbol);
      return address.map(a -> Linker.nativeLinker().downcallHandle(a, descriptor, options));
    } catch (RuntimeException | LinkageError e) {
      return Optional.empty();
    }
  }
}
