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
 * {@code moeyard launch}: torchrun for moeyard commands. Starts N rank processes of this JVM on
 * this host with the torchrun variables set, so that a multi-process command runs the same way here
 * as under torchrun or a cluster scheduler: alone (standalone mode), or as one machine's share of a
 * world of several machines ({@code --machines}, {@code --machine-rank}, {@code --master-addr}), as
 * torchrun's {@code --nnodes} / {@code --node-rank} do.
 */
@Command(
    name = "launch",
    mixinStandardHelpOptions = true,
    description = {
      "Starts N local rank processes running a moeyard command, with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,",
      "MASTER_ADDR and MASTER_PORT set as torchrun sets them; --nodes M makes them simulate M nodes of N/M ranks.",
      "Every output line is prefixed with [rank r]. Exit 0 when every rank exits 0; otherwise the first failing rank's",
      "exit code, after the other ranks were stopped. Example: moeyard launch --nprocs 4 -- rendezvous-check",
      "Across machines, one launch per machine: moeyard launch --nprocs 8 --machines 2 --machine-rank 0|1",
      "--master-addr HOST0 --master-port 29500 -- <command>; a failing rank stops its machine's ranks and fails the",
      "others' through the store."
    })
public final class LaunchCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--nprocs", required = true, paramLabel = "N", description = "rank processes to start")
  int nprocs;

  @Option(names = "--nodes", paramLabel = "M", defaultValue = "1", description = "simulated nodes on this machine; N must be a multiple; default ${DEFAULT-VALUE}")
  int nodes;

  @Option(names = "--master-port", paramLabel = "P", description = "port of rank 0's store; default: a free port (one machine only)")
  Integer masterPort;

  @Option(names = "--machines", paramLabel = "K", defaultValue = "1",
      description = "machines the world spans, each running one launch of N ranks; default ${DEFAULT-VALUE}")
  int machines;

  @Option(names = "--machine-rank", paramLabel = "I", defaultValue = "0",
      description = "this machine's index in [0, K): its ranks are I*N .. I*N+N-1; machine 0 runs rank 0's store")
  int machineRank;

  @Option(names = "--master-addr", paramLabel = "HOST",
      description = "host of machine 0, where rank 0's store listens; default 127.0.0.1 (required with --machines > 1)")
  String masterAddr;

  @Option(names = "--machine-name", paramLabel = "NAME",
      description = "the machine name this launch's ranks give (default: host name and boot id); launches on one host with"
          + " different names rehearse a world of several machines, sharing no memory between them")
  String machineName;

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
    if (machines < 1) return bad("--machines must be at least 1, got " + machines);
    if (machineRank < 0 || machineRank >= machines) {
      return bad("--machine-rank " + machineRank + " is outside [0, " + machines + ") (--machines " + machines + ")");
    }
    if (machines > 1 && masterPort == null) {
      return bad("--machines " + machines + " needs --master-port: every machine's launch must name the same port of machine 0");
    }
    if (machines > 1 && (masterAddr == null || masterAddr.isBlank())) {
      return bad("--machines " + machines + " needs --master-addr: the host of machine 0, reachable from every machine");
    }
    if ((long) nprocs * machines > Integer.MAX_VALUE) return bad("--nprocs " + nprocs + " x --machines " + machines + " ranks is too many");
    int port;
    try {
      port = masterPort != null ? masterPort : freePort();
    } catch (IOException e) {
      err.println("moeyard launch: cannot find a free port for the store: " + e.getMessage());
      return 2;
    }
    if (machineName != null && machineName.isBlank()) return bad("--machine-name must not be blank");
    return new RankProcesses(spec.commandLine().getOut(), err, false, machineName).run(RankProcesses.sameJvm(command), nprocs,
        machineRank * nprocs, nprocs * machines, nprocs / nodes, masterAddr == null ? "127.0.0.1" : masterAddr, port);
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
