/**
 * Routing traces: what the gate of a real (or synthetic) model chose, the only evidence a
 * placement can be planned on.
 *
 * <p>Two kinds, because engines record two kinds: per-token routing {@code [tokens, layers, topk]}
 * in {@code .npy} (SGLang's per-token recorder, vLLM's routed experts, ExFlow) and load-only
 * {@code {"logical_count": [L][E]}} JSON (SGLang's default recorder). Loads suffice to balance;
 * keeping a token's consecutive experts close needs the per-token form, from which layer-to-layer
 * transitions and same-layer co-activations are derived.
 *
 * <p>Pair counts are built dense per layer and handed out sparse: a dense E x E scratch array is
 * fastest to fill, but most pairs of a 256-expert model are zero and the planners iterate over the
 * non-zero ones only.
 *
 * <p>Files are recognised by content (the {@code .npy} magic, a JSON object), not by extension,
 * and every malformed input fails with a {@link io.moeyard.placement.trace.TraceFormatException}
 * that names the file and the value: traces come from other people's exporters, and a wrong
 * shape silently accepted would give a plausible-looking, wrong plan.
 */
package io.moeyard.placement.trace;
