package io.moeyard.placement.trace;

/**
 * An integer NumPy array read into memory: its shape and its values in C order, widened to int.
 *
 * @param shape dimensions, outermost first
 * @param data values in C (row-major) order
 * @param dtype the file's NumPy descr, e.g. {@code <i2}
 */
public record NpyArray(int[] shape, int[] data, String dtype) {
  public long size() {
    long n = 1;
    for (int d : shape) n *= d;
    return n;
  }
}
