/**
 * Placement files in the formats engines already load, so a plan goes into SGLang or vllm-ascend
 * without a conversion script.
 *
 * <p>Slots are GPU-major everywhere (slot p on GPU p / (P / G)), which is how SGLang and EPLB
 * number them; vllm-ascend lists each device's experts, which is the same order cut per device.
 * The {@code eplb} format's {@code log2phy} lists an expert's slots in ascending slot order: any
 * order is valid for consumers (replicas are interchangeable), and ascending is stable across
 * planners that do not track replica ranks.
 *
 * <p>Files are written atomically: engines reload a placement file when it changes, and a reader
 * that sees half a JSON would fail or, worse, parse a prefix.
 */
package io.moeyard.placement.format;
