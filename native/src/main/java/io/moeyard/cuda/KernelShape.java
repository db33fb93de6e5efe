package io.moeyard.cuda;

import io.moeyard.comm.CommConfig;
import io.moeyard.comm.Communicator;
import io.moeyard.engine.DType;
import io.moeyard.engine.ExpertMap;
import java.util.Objects;

/**
 * An expert map and a communicator's sizes as the kernels take them: plain ints, the map in CSR
 * form and dtype codes. Derived only, so the engine's {@link ExpertMap} and {@link CommConfig} stay
 * the one description of a layer; this adds the limits the kernels have on top of theirs.
 */
final class KernelShape {
  /** Limits of config.cuh ({@code kMaxRanks}, {@code kMaxTopk}, {@code kMaxLayoutBins}). */
  static final int MAX_RANKS = 64;
  static final int MAX_TOPK = 16;
  static final int MAX_LAYOUT_BINS = 12 * 1024;

  private final ExpertMap map;
  private final CommConfig comm;
  private final int receiveRows;

  private KernelShape(ExpertMap map, CommConfig comm) {
    this.map = Objects.requireNonNull(map, "expert map");
    this.comm = Objects.requireNonNull(comm, "config");
    int ranks = map.ranks();
    if (ranks > MAX_RANKS) {
      throw new IllegalArgumentException("ranks must be in [1, " + MAX_RANKS + "]: " + ranks);
    }
    if (comm.topk() > MAX_TOPK) {
      throw new IllegalArgumentException("topk must be in [1, " + MAX_TOPK + "]: " + comm.topk());
    }
    if (map.slots() + ranks > MAX_LAYOUT_BINS) {
      throw new IllegalArgumentException("too many slots for the layout kernel: " + map.slots());
    }
    if ((long) comm.maxTokens() * Math.max(comm.topk(), ranks) > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("maxTokens " + comm.maxTokens() + " x top-" + comm.topk() + " selections do not fit an int");
    }
    long worst = Communicator.worstCaseReceiveRows(ranks, comm.maxTokens(), comm.topk(), map.slotsPerRank());
    long rows = comm.receiveRows() > 0 ? comm.receiveRows() : worst;
    if (rows > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("the worst-case receive buffer (" + worst + " rows) does not fit an int: set CommConfig.receiveRows");
    }
    this.receiveRows = (int) rows;
  }

  /** Throws {@link IllegalArgumentException} naming the value the kernels cannot take. */
  static KernelShape of(ExpertMap map, CommConfig comm) {
    return new KernelShape(map, comm);
  }

  /** The kernels' dtype code ({@code DtypeCode} in config.cuh). */
  static int code(DType t) {
    return switch (t) {
      case BF16 -> 0;
      case FP16 -> 1;
      case FP32 -> 2;
      case FP8_E4M3 -> 3;
    };
  }

  ExpertMap map() {
    return map;
  }

  CommConfig comm() {
    return comm;
  }

  int ranks() {
    return map.ranks();
  }

  int localRanks() {
    return map.topology().localRanks();
  }

  int slotsPerRank() {
    return map.slotsPerRank();
  }

  int slots() {
    return map.slots();
  }

  int experts() {
    return map.experts();
  }

  int hidden() {
    return comm.hidden();
  }

  int topk() {
    return comm.topk();
  }

  int maxTokens() {
    return comm.maxTokens();
  }

  /** Rows each rank's receive buffer holds: the config's, or the worst case when it names none. */
  int receiveRows() {
    return receiveRows;
  }

  DType dispatchType() {
    return comm.dispatchType();
  }

  DType combineType() {
    return comm.combineType();
  }

  int combineCode() {
    return code(comm.combineType());
  }

  int rowBytes() {
    return comm.hidden() * comm.dispatchType().bytes();
  }

  int combineRowBytes() {
    return comm.hidden() * comm.combineType().bytes();
  }

  int scaleCols() {
    return comm.dispatchType().hasScales() ? comm.hidden() / DType.FP8_SCALE_BLOCK : 0;
  }

  int[] csrOffsets() {
    int[] o = new int[map.experts() + 1];
    for (int e = 0; e < map.experts(); e++) {
      o[e + 1] = o[e] + map.slotsOf(e).length;
    }
    return o;
  }

  int[] csrSlots() {
    int[] s = new int[map.slots()];
    int i = 0;
    for (int e = 0; e < map.experts(); e++) {
      for (int p : map.slotsOf(e)) {
        s[i++] = p;
      }
    }
    return s;
  }
}
