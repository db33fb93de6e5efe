package io.moeyard.cuda;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectPackage;

import java.io.PrintWriter;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

/**
 * Runs this package's tests (host index math, availability, GPU dispatch / combine) without Maven,
 * for the GPU machine, which has Java but no Maven:
 * {@code java --enable-native-access=ALL-UNNAMED -cp "test-classes:classes:deps/*"
 * io.moeyard.cuda.GpuTestMain}. Exit code 0 only when no test failed; with
 * {@code --require-gpu}, also 1 when the backend is unavailable (the GPU tests were skipped).
 */
public final class GpuTestMain {
  private GpuTestMain() {}

  public static void main(String[] args) {
    boolean requireGpu = args.length > 0 && args[0].equals("--require-gpu");
    System.out.println(CudaBackend.availability().message());
    LauncherDiscoveryRequest req =
        LauncherDiscoveryRequestBuilder.request().selectors(selectPackage("io.moeyard.cuda")).build();
    Launcher launcher = LauncherFactory.create();
    SummaryGeneratingListener listener = new SummaryGeneratingListener();
    launcher.execute(req, listener);
    TestExecutionSummary s = listener.getSummary();
    PrintWriter out = new PrintWriter(System.out, true);
    s.printFailuresTo(out, 30);
    s.printTo(out);
    boolean failed = s.getTotalFailureCount() > 0;
    boolean noGpu = !CudaBackend.availability().available();
    if (requireGpu && noGpu) {
      System.out.println("FAILED: --require-gpu, but " + CudaBackend.availability().message());
    }
    System.exit(failed || (requireGpu && noGpu) ? 1 : 0);
  }
}
