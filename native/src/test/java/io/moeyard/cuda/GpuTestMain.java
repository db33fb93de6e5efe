package io.moeyard.cuda;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectPackage;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import org.junit.platform.engine.DiscoverySelector;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TagFilter;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

/**
 * Runs this package's tests (host index math, availability, GPU dispatch / combine) without Maven,
 * for the GPU machine, which has Java but no Maven:
 * {@code java --enable-native-access=ALL-UNNAMED -cp "test-classes:classes:deps/*"
 * io.moeyard.cuda.GpuTestMain [--require-gpu] [--require-nccl] [--class NAME]...}. Without {@code --class} it runs
 * the package except the classes tagged {@link #OWN_STEP} (tests that start processes, each a step
 * of its own in bench/gpu/run.sh); with it, just the named classes. Exit code 0 only when no test
 * failed; with {@code --require-gpu}, also 1 when the backend is unavailable (the GPU tests were
 * skipped), and with {@code --require-nccl} when NCCL is (the NCCL tests were skipped).
 */
public final class GpuTestMain {
  private GpuTestMain() {}

  /** The tag of the test classes that bench/gpu/run.sh runs as steps of their own. */
  public static final String OWN_STEP = "gpu-step";

  public static void main(String[] args) {
    boolean requireGpu = false;
    boolean requireNccl = false;
    List<DiscoverySelector> classes = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--require-gpu" -> requireGpu = true;
        case "--require-nccl" -> requireNccl = true;
        case "--class" -> {
          if (i + 1 == args.length) throw new IllegalArgumentException("--class needs a class name");
          classes.add(selectClass(args[++i]));
        }
        default -> throw new IllegalArgumentException("unknown argument " + args[i] + " (--require-gpu, --require-nccl, --class NAME)");
      }
    }
    System.out.println(CudaBackend.availability().message());
    if (requireNccl) System.out.println(NcclAvailability.get().message());
    LauncherDiscoveryRequest req = classes.isEmpty()
        ? LauncherDiscoveryRequestBuilder.request().selectors(selectPackage("io.moeyard.cuda"))
            .filters(TagFilter.excludeTags(OWN_STEP)).build()
        : LauncherDiscoveryRequestBuilder.request().selectors(classes).build();
    Launcher launcher = LauncherFactory.create();
    SummaryGeneratingListener listener = new SummaryGeneratingListener();
    // a GPU test that cannot run here aborts on an assumption: print why, or a step that ran
    // nothing would look like a pass
    TestExecutionListener why = new TestExecutionListener() {
      @Override
      public void executionFinished(TestIdentifier id, TestExecutionResult result) {
        if (result.getStatus() == TestExecutionResult.Status.ABORTED && id.isTest()) {
          System.out.println("aborted: " + id.getDisplayName() + ": "
              + result.getThrowable().map(Throwable::getMessage).orElse("?"));
        }
      }
    };
    launcher.execute(req, listener, why);
    TestExecutionSummary s = listener.getSummary();
    PrintWriter out = new PrintWriter(System.out, true);
    s.printFailuresTo(out, 30);
    s.printTo(out);
    boolean failed = s.getTotalFailureCount() > 0;
    boolean noGpu = !CudaBackend.availability().available();
    if (requireGpu && noGpu) {
      System.out.println("FAILED: --require-gpu, but " + CudaBackend.availability().message());
    }
    boolean noNccl = requireNccl && !NcclAvailability.get().available();
    if (noNccl) System.out.println("FAILED: --require-nccl, but " + NcclAvailability.get().message());
    System.exit(failed || (requireGpu && noGpu) || noNccl ? 1 : 0);
  }
}
