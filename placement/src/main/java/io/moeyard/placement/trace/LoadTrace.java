package io.moeyard.placement.trace;

/**
 * Loads only, {@code [layer][expert]}: what SGLang's expert-distribution recorder writes as
 * {@code logical_count}. Enough to balance, not enough to keep tokens' paths local.
 */
public record LoadTrace(String name, double[][] loads) implements Trace {
  public LoadTrace {
    if (loads.length == 0 || loads[0].length == 0) throw new TraceFormatException(name + ": logical_count is empty");
    for (int l = 0; l < loads.length; l++) {
      if (loads[l].length != loads[0].length) {
        throw new TraceFormatException(name + ": logical_count layer " + l + " has " + loads[l].length
            + " experts, layer 0 has " + loads[0].length);
      }
      for (int e = 0; e < loads[l].length; e++) {
        double v = loads[l][e];
        if (!(v >= 0) || Double.isInfinite(v)) {
          throw new TraceFormatException(name + ": logical_count[" + l + "][" + e + "] = " + v + " is not a finite count >= 0");
        }
      }
    }
  }

  @Override
  public int layers() {
    return loads.length;
  }

  @Override
  public int experts() {
    return loads[0].length;
  }
}
