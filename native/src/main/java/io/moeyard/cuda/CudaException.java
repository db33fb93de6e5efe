package io.moeyard.cuda;

/** A CUDA call of the native library failed; the message names the call and the CUDA error. */
public class CudaException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public CudaException(String message) {
    super(message);
  }
}
