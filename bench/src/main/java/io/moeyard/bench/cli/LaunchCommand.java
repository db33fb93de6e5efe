package io.moeyard.bench.cli;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code moeyard launch}: torchrun's standalone mode for moeyard commands. Starts N rank processes
 * of this JVM on this host with the torchrun variables set, so that a multi-process command runs
 * the same way here as under torchrun or a cluster scheduler.
 */
@Command(
    name = "launch",
    mixinStandardHelpOptions = true,
    description = {
      "Starts N local rank processes running a moeyard command, with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,",
      "MASTER_ADDR and MASTER_PORT set as torchrun sets them; --nodes M makes them simulate M nodes of N/M ranks.",
      "Every output line is prefixed with [rank r]. Exit 0 when every rank exits 0; otherwise the first failing rank's",
      "exit code, after the other ranks were stopped. Example: moeyard launch --nprocs 4 -- rendezvous-check"
    })
public final class LaunchCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--nprocs", required = true, paramLabel = "N", description = "rank processes to start")
  int nprocs;

  @Option(names = "--nodes", paramLabel = "M", defaultValue = "1", description = "simulated nodes; N must be a multiple; default ${DEFAULT-VALUE}")
  int nodes;

  @Option(names = "--master-port", paramLabel = "P", description = "port of rank 0's store; default: a free port")
  Integer masterPort;

  @Parameters(paramLabel = "COMMAND", arity = "1..*", description = "the moeyard command and its arguments, after --")
  List<String> command;

  @Override
  public Integer call() {
    var err = spec.commandLine().getErr();
    if (nprocs < 1) return bad("--nprocs must be at least 1, got " + nprocs);
    if (nodes < 1) return bad("--nodes must be at least 1, got " + nodes);
    if (nprocs % nodes != 0) return bad("--nprocs " + nprocs + " is not a multiple of --nodes " + nodes + " (every node holds the same number of ranks)");
    if (masterPort != null && (masterPort < 1 || masterPort > 65535)) return bad("--master-port " + masterPort + " is outside [1, 65535]");
    if (command.getFirst().equals("launch")) return bad("a launch cannot launch itself");
    int port;
    try {
      port = masterPort != null ? masterPort : freePort();
    } catch (IOException e) {
      err.println("moeyard launch: cannot find a free port for the store: " + e.getMessage());
      return 2;
    }
    return new RankProcesses(spec.commandLine().getOut(), err)
        .run(RankProcesses.sameJvm(command), nprocs, nprocs / nodes, "127.0.0.1", port);
  }

  private int bad(String message) {
    spec.commandLine().getErr().println("moeyard launch: " + message);
    return 2;
  }

  /** A port free now; rank 0 binds it a moment later, and a lost race fails as "port in use". */
  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }
}
