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
 *       explain. NCCL, for the NCCL backend, is opened by the same library at run time
 *       ({@code dlopen("libnccl.so.2")}, no link-time dependency, so the library still loads where
 *       NCCL is absent), with the presets' NCCL bindings, an optional dependency, as the fallback:
 *       so far {@link io.moeyard.cuda.NcclAvailability} (a probe that never throws and names the
 *       binding in use) and {@link io.moeyard.cuda.NcclUniqueIds} (the unique-id exchange over the
 *       process rendezvous) and {@link io.moeyard.cuda.NcclChannel} (grouped ncclSend / ncclRecv
 *       on the caller's stream).</li>
 *   <li><b>Never a crash without a GPU.</b> The library is built with {@code -cudart static}, so it
 *       loads without libcudart or a driver; {@link io.moeyard.cuda.CudaAvailability} turns every
 *       failure (no library in the jar, no driver, no device) into one
 *       "CUDA backend unavailable: &lt;reason&gt;" message, and GPU tests skip with that reason.</li>
 *   <li><b>Index math tested without a GPU.</b> The layout arithmetic lives in
 *       {@code __host__ __device__} functions; {@code NativeKernels.host*} runs it on Java arrays on
 *       the host, so CI checks the very code the kernels run.</li>
 *   <li><b>Virtual ranks behind the Communicator.</b> {@link io.moeyard.cuda.CudaWorld} runs R ranks
 *       on one GPU and hands out one {@link io.moeyard.cuda.CudaCommunicator} (an
 *       {@link io.moeyard.comm.Communicator}) per rank, each driven by its own thread; each rank has
 *       its own device buffers, stream and events, a collective meets on the host and each rank
 *       enqueues its own kernels, which store into peer buffers exactly as they would through CUDA
 *       IPC on an NVLink node. Cross-rank order is events. So the same kernels and the same per-rank
 *       state serve one rank per process ({@link io.moeyard.cuda.CudaWorld#join}): there
 *       {@link io.moeyard.cuda.CudaIpc} maps each process's device memory (one slab per rank) and
 *       events into the others (CUDA IPC handles exchanged over the process transport), and the
 *       host meetings are the process transport's.</li>
 *   <li><b>Device memory as raw addresses.</b> {@link io.moeyard.cuda.DeviceRows} and
 *       {@link io.moeyard.cuda.DeviceRouting} hold {@code long} device addresses (what GPU runtimes
 *       hand out; a {@code MemorySegment} over device memory could never be read), checked with
 *       {@code cudaPointerGetAttributes}; the engine's stream comes in as a
 *       {@link io.moeyard.cuda.CudaStream} and the results go out in its order. A call allocates
 *       nothing and waits once per dispatch, for the layout counts.</li>
 *   <li><b>Nodes: the two-hop path.</b> With more than one node and {@code nodePath RELAY} (the
 *       default) the fused path crosses each node boundary once per (token, node):
 *       {@code RelayPath} stores within the node directly and packs one message per
 *       remote node for the rank of the same local index there, which recomputes the sender's
 *       layout and makes its stores; combine sums per node on that relay and sends one row per
 *       token and node home. The cross-node leg is a {@code DeviceChannel}, a
 *       grouped exchange of device memory on the rank's stream: peer copies between the ranks of
 *       one machine ({@code PeerCopyChannel}; CUDA IPC between rank processes), grouped NCCL send /
 *       receive ({@code NcclDeviceChannel}) or host staging between machines
 *       ({@code SplitChannel}). Its device memory is one owner's,
 *       {@code RelayBuffers}, allocated with the communicator.</li>
 *   <li><b>One error on every rank.</b> Arguments are checked on the host, the routing on the device
 *       (its verdict travels with the counts), and every verdict is exchanged before any row moves,
 *       so a misuse on one rank fails all of them with the same message.</li>
 * </ul>
 */
package io.moeyard.cuda;
