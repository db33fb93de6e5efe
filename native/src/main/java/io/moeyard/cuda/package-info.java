/**
 * The CUDA backend of moeyard: hand-written kernels (layout, fused dispatch / combine, the unfused
 * Megatron-style baseline) in one JNI library, {@code libmoeyard_cuda.so}, and the Java side that
 * loads and drives it.
 *
 * <p>Why this shape:
 * <ul>
 *   <li><b>One owner per resource.</b> Device memory, streams and events are created and destroyed
 *       only by the JNI library ({@link io.moeyard.cuda.NativeKernels}); Java holds them as opaque
 *       {@code long} handles and gives them back through the same library. The org.bytedeco CUDA
 *       presets are not used here: mixing two CUDA runtimes (theirs dynamic, ours static) in one
 *       process would give two owners of the same context and make the failure modes harder to
 *       explain. The NCCL backend, which needs NCCL, is where the bytedeco presets belong.</li>
 *   <li><b>Never a crash without a GPU.</b> The library is built with {@code -cudart static}, so it
 *       loads without libcudart or a driver; {@link io.moeyard.cuda.CudaAvailability} turns every
 *       failure (no library in the jar, no driver, no device) into one
 *       "CUDA backend unavailable: &lt;reason&gt;" message, and GPU tests skip with that reason.</li>
 *   <li><b>Index math tested without a GPU.</b> The layout arithmetic lives in
 *       {@code __host__ __device__} functions; {@code NativeKernels.host*} runs it on Java arrays on
 *       the host, so CI checks the very code the kernels run.</li>
 *   <li><b>Virtual ranks.</b> {@link io.moeyard.cuda.CudaBackend} runs R ranks on one GPU, each with
 *       its own device buffers and stream; the kernels store into peer buffers exactly as they would
 *       through CUDA IPC on an NVLink node, so the same kernels serve the multi-process backend.</li>
 * </ul>
 */
package io.moeyard.cuda;
