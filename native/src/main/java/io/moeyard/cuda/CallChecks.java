package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.engine.DType;
import io.moeyard.engine.RowBuffer;
import io.moeyard.dispatch.Routing;

/**
 * What is wrong with a call's arguments, as a message naming the value, or null: computed on the
 * host before the call's first exchange, so that every rank learns of any rank's problem there
 * and all throw the same error before a buffer is written. Pure functions of the arguments, the
 * shape and what the device says of an address ({@link Memory}), so they are tested without a GPU.
 */
final class CallChecks {
  private CallChecks() {}

  /** What the device and the world say of an address. */
  interface Memory {
    /** {cudaMemoryType, device} ({@link NativeKernels#pointerKind}). */
    int[] kind(long address);

    /** The rank whose communicator buffers the range meets, -2 for the world's tables, -1 for none. */
    int ownerOf(long address, long bytes);

    /** Whether the range lies inside rank r's own receive rows. */
    boolean inReceiveRows(int rank, long address, long bytes);
  }

  /** The device of every world (device 0). */
  static final int DEVICE = 0;

  static String dispatch(KernelShape s, int rank, boolean closed, DeviceRows x, DeviceRouting routing, DeviceRows into,
      CudaStream stream, Memory mem) {
    String me = "rank " + rank + ": ";
    if (closed) return me + "the communicator is closed";
    if (x == null) return me + "x is null";
    if (routing == null) return me + "routing is null";
    if (stream == null) return me + "stream is null (CudaStream.DEFAULT is the default stream)";
    String p = rows(me, "x", x, s.hidden(), s.dispatchType());
    if (p != null) return p;
    p = routing(me, s, routing.tokens(), routing.topk());
    if (p != null) return p;
    if (x.rows() < routing.tokens()) {
      return me + "x has " + x.rows() + " rows, the routing has " + routing.tokens() + " tokens";
    }
    if (into != null) {
      p = rows(me, "the receive rows", into, s.hidden(), s.dispatchType());
      if (p != null) return p;
    }
    p = aligned(me, "x", x.address());
    if (p == null) p = device(me, "x", x.address(), x.first(routing.tokens()).byteSize(), mem, -1);
    if (p == null && x.scalesAddress() != 0) {
      p = device(me, "x's scales", x.scalesAddress(), x.first(routing.tokens()).scalesByteSize(), mem, -1);
    }
    if (p == null) p = device(me, "topkIdx", routing.idxAddress(), routing.bytes(), mem, -1);
    if (p == null) p = device(me, "topkWeights", routing.weightsAddress(), routing.bytes(), mem, -1);
    if (p == null && into != null) p = aligned(me, "the receive rows", into.address());
    if (p == null && into != null) p = device(me, "the receive rows", into.address(), into.byteSize(), mem, -1);
    if (p == null && into != null && into.scalesAddress() != 0) {
      p = device(me, "the receive rows' scales", into.scalesAddress(), into.scalesByteSize(), mem, -1);
    }
    return p;
  }

  static String combine(KernelShape s, int rank, boolean closed, Object me0, long generation, CommConfig.Variant variant,
      DeviceDispatched d, DeviceRows y, DeviceRows out, CudaStream stream, Memory mem) {
    String me = "rank " + rank + ": ";
    if (closed) return me + "the communicator is closed";
    String p = handle(me, me0, generation, variant, d);
    if (p != null) return p;
    if (y == null) return me + "expert output is null";
    if (out == null) return me + "out is null";
    if (stream == null) return me + "stream is null (CudaStream.DEFAULT is the default stream)";
    p = rows(me, "expert output", y, s.hidden(), s.combineType());
    if (p == null) p = rows(me, "out", out, s.hidden(), s.combineType());
    if (p != null) return p;
    if (y.rows() < d.receivedRows()) {
      return me + "expert output has " + y.rows() + " rows, this rank received " + d.receivedRows();
    }
    if (out.rows() < d.tokens()) {
      return me + "out has " + out.rows() + " rows, this rank dispatched " + d.tokens() + " tokens";
    }
    p = aligned(me, "expert output", y.address());
    if (p == null) p = aligned(me, "out", out.address());
    if (p == null) p = device(me, "expert output", y.address(), y.first(d.receivedRows()).byteSize(), mem, rank);
    if (p == null) p = device(me, "out", out.address(), out.first(d.tokens()).byteSize(), mem, -1);
    return p;
  }

  /**
   * Whether destination d can take what a dispatch sends it: {@code rows} received rows into a
   * buffer of {@code capacity} ({@code own}: the communicator's, sized by CommConfig.receiveRows;
   * else the rows the rank passed) and {@code pairs} token-rank pairs into {@code pairCapacity}
   * pair records.
   */
  static String receive(int d, int rows, int pairs, int capacity, boolean own, int pairCapacity) {
    if (rows > capacity) {
      return "rank " + d + " would receive " + rows + " rows, its receive buffer holds " + capacity
          + (own ? " (CommConfig.receiveRows)" : " (the rows it passed)");
    }
    if (pairs > pairCapacity) {
      return "rank " + d + " would receive " + pairs + " token-rank pairs, its pair records hold " + pairCapacity;
    }
    return null;
  }

  /** A dispatch result handed back to combine: this communicator's, of its latest dispatch. */
  static String handle(String me, Object owner, long generation, CommConfig.Variant variant, DeviceDispatched d) {
    if (d == null) return me + "the dispatch result is null";
    if (d.owner != owner) return me + "the dispatch result belongs to another communicator";
    if (d.generation != generation) {
      return me + "the dispatch result is from an earlier dispatch (" + d.generation + "; the latest is " + generation
          + "): its rows and bookkeeping were overwritten";
    }
    if (variant == CommConfig.Variant.FUSED && d.variant != CommConfig.Variant.FUSED) {
      return me + "the fused combine needs the pair records of a fused dispatch; this result is of an unfused one";
    }
    return null;
  }

  /** The host path's rows and routing (copied to the device by the communicator itself). */
  static String hostDispatch(KernelShape s, int rank, boolean closed, RowBuffer x, Routing routing, RowBuffer into) {
    String me = "rank " + rank + ": ";
    if (closed) return me + "the communicator is closed";
    if (x == null) return me + "x is null";
    if (routing == null) return me + "routing is null";
    if (x.hidden() != s.hidden() || x.dtype() != s.dispatchType()) {
      return me + "x is " + x.hidden() + " x " + x.dtype().cliName() + ", the communicator was built for "
          + s.hidden() + " x " + s.dispatchType().cliName();
    }
    String p = routing(me, s, routing.tokens(), routing.topk());
    if (p != null) return p;
    long n = (long) routing.tokens() * routing.topk();
    if (routing.topkIdx().length != n || routing.topkWeights().length != n) {
      return me + "routing arrays hold " + routing.topkIdx().length + " ids and " + routing.topkWeights().length
          + " weights, " + routing.tokens() + " x " + routing.topk() + " need " + n;
    }
    if (x.rows() < routing.tokens()) return me + "x has " + x.rows() + " rows, the routing has " + routing.tokens() + " tokens";
    if (into != null && (into.hidden() != s.hidden() || into.dtype() != s.dispatchType())) {
      return me + "the receive buffer is " + into.hidden() + " x " + into.dtype().cliName() + ", the communicator was built for "
          + s.hidden() + " x " + s.dispatchType().cliName();
    }
    return null;
  }

  static String hostCombine(KernelShape s, int rank, boolean closed, RowBuffer y, RowBuffer out, int receivedRows, int tokens) {
    String me = "rank " + rank + ": ";
    if (closed) return me + "the communicator is closed";
    if (y == null) return me + "expert output is null";
    if (out == null) return me + "out is null";
    if (y.hidden() != s.hidden() || y.dtype() != s.combineType()) {
      return me + "expert output is " + y.hidden() + " x " + y.dtype().cliName() + ", the communicator was built for "
          + s.hidden() + " x " + s.combineType().cliName();
    }
    if (out.hidden() != s.hidden() || out.dtype() != s.combineType()) {
      return me + "out is " + out.hidden() + " x " + out.dtype().cliName() + ", the communicator was built for "
          + s.hidden() + " x " + s.combineType().cliName();
    }
    if (y.rows() < receivedRows) return me + "expert output has " + y.rows() + " rows, this rank received " + receivedRows;
    if (out.rows() < tokens) return me + "out has " + out.rows() + " rows, this rank dispatched " + tokens + " tokens";
    return null;
  }

  private static String routing(String me, KernelShape s, int tokens, int topk) {
    if (topk != s.topk()) return me + "routing has top-" + topk + ", the communicator was built for top-" + s.topk();
    if (tokens < 0) return me + "routing has " + tokens + " tokens";
    if (tokens > s.maxTokens()) {
      return me + "routing has " + tokens + " tokens, the communicator was built for at most " + s.maxTokens();
    }
    return null;
  }

  private static String rows(String me, String what, DeviceRows r, int hidden, DType dtype) {
    if (r.hidden() != hidden || r.dtype() != dtype) {
      return me + what + " is " + r.hidden() + " x " + r.dtype().cliName() + ", the communicator was built for "
          + hidden + " x " + dtype.cliName();
    }
    return null;
  }

  /**
   * Rows must start on a 16-byte boundary: the kernels move them 16 bytes at a time, and a
   * misaligned address would fault on the device instead of failing here.
   */
  private static String aligned(String me, String what, long address) {
    if ((address & 15) == 0) return null;
    return me + what + " (0x" + Long.toHexString(address) + ") is not 16-byte aligned: the kernels move rows 16 bytes at a time";
  }

  /**
   * The range must be device (or managed) memory of the world's device and must not meet the
   * communicator's own buffers, except, when {@code mayBeReceiveRowsOf} is a rank, that rank's
   * receive rows (experts may write their outputs over their inputs).
   */
  private static String device(String me, String what, long address, long bytes, Memory mem, int mayBeReceiveRowsOf) {
    String at = what + " (0x" + Long.toHexString(address) + ")";
    int[] k = mem.kind(address);
    if (k[0] != 2 && k[0] != 3) {
      return me + at + " is " + (k[0] == 1 ? "host memory" : "not memory CUDA knows (unregistered host memory or a bad address)")
          + ", not device memory";
    }
    if (k[1] != DEVICE) return me + at + " is memory of device " + k[1] + ", the world runs on device " + DEVICE;
    if (bytes > 0 && mayBeReceiveRowsOf >= 0 && mem.inReceiveRows(mayBeReceiveRowsOf, address, bytes)) return null;
    int owner = bytes > 0 ? mem.ownerOf(address, bytes) : -1;
    if (owner >= 0) return me + at + " lies in rank " + owner + "'s communicator buffers, not memory of the engine";
    if (owner == -2) return me + at + " lies in the world's own tables, not memory of the engine";
    return null;
  }
}
