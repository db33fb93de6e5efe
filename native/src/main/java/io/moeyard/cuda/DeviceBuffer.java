package io.moeyard.cuda;

/**
 * Device memory of one's own, for the code that stands in for an engine (tests, the bench,
 * selftest): one {@code cudaMalloc} at {@link #allocate}, one {@code cudaFree} at {@link #close()},
 * synchronous copies to and from Java arrays. Engines normally bring their own device memory and
 * hand its addresses to the communicator ({@link DeviceRows}, {@link DeviceRouting}).
 */
public final class DeviceBuffer implements AutoCloseable {
  private final long bytes;
  private long address;

  private DeviceBuffer(long address, long bytes) {
    this.address = address;
    this.bytes = bytes;
  }

  /** {@code bytes} of device memory on device 0 (a zero-byte request still gets a valid address). */
  public static DeviceBuffer allocate(long bytes) {
    if (bytes < 0) throw new IllegalArgumentException("bytes must be >= 0, got " + bytes);
    CudaBackend.availability().require();
    NativeKernels.setDevice(0);
    return new DeviceBuffer(NativeKernels.malloc(bytes), bytes);
  }

  public long address() {
    check(0);
    return address;
  }

  public long byteSize() {
    return bytes;
  }

  public void upload(byte[] src) {
    check((long) src.length);
    NativeKernels.bytesToDevice(src, 0, src.length, address);
  }

  public void upload(int[] src) {
    check(4L * src.length);
    NativeKernels.intsToDevice(src, 0, src.length, address);
  }

  public void upload(float[] src) {
    check(4L * src.length);
    NativeKernels.floatsToDevice(src, 0, src.length, address);
  }

  /** The first {@code n} bytes. */
  public byte[] downloadBytes(int n) {
    check(n);
    byte[] b = new byte[n];
    NativeKernels.bytesFromDevice(address, b, 0, n);
    return b;
  }

  /** Fills the buffer with {@code value} bytes (synchronously). */
  public void fill(int value) {
    check(0);
    NativeKernels.memsetAsync(address, value, bytes, 0L);
    NativeKernels.deviceSynchronize();
  }

  private void check(long n) {
    if (address == 0) throw new IllegalStateException("device buffer closed");
    if (n > bytes) throw new IllegalArgumentException(n + " bytes do not fit a device buffer of " + bytes);
  }

  @Override
  public void close() {
    long p = address;
    address = 0;
    if (p != 0) NativeKernels.free(p);
  }
}
