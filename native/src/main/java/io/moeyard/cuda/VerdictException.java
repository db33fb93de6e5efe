package io.moeyard.cuda;

/**
 * A failure that every rank of a process world throws alike, from one exchange of the ranks'
 * verdicts (a rank that could not share or map its device memory, slabs of different sizes): the
 * peers know of it already, so nobody aborts the transport, and every rank goes on to the same
 * closing barrier, where the slabs are freed instead of being left to the process's exit.
 */
final class VerdictException extends CudaException {
  private static final long serialVersionUID = 1L;

  VerdictException(String message) {
    super(message);
  }
}
