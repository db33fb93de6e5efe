package io.moeyard.cuda;

/** The CUDA backend cannot be used here; the message is "CUDA backend unavailable: &lt;reason&gt;". */
public class CudaUnavailableException extends IllegalStateException {
  private static final long serialVersionUID = 1L;

  public CudaUnavailableException(String message) {
    super(message);
  }
}
