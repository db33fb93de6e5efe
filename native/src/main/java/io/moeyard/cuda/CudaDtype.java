package io.moeyard.cuda;

/**
 * Element types of the token rows. The ordinal is the dtype code of the native library
 * ({@code DtypeCode} in config.cuh): keep the order.
 */
public enum CudaDtype {
  BF16(2),
  FP16(2),
  FP32(4),
  /** FP8 E4M3 with one float scale per 128 channels; dispatch only (combine is BF16). */
  FP8_E4M3(1);

  private final int bytes;

  CudaDtype(int bytes) {
    this.bytes = bytes;
  }

  /** Bytes per element. */
  public int bytes() {
    return bytes;
  }

  /** The dtype code passed to the kernels. */
  public int code() {
    return ordinal();
  }

  /** Whether the combine kernels accept this dtype. */
  public boolean combinable() {
    return this != FP8_E4M3;
  }
}
