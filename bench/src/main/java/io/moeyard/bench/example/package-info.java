/**
 * The integration guide engines copy: a whole MoE layer (router, dispatch, experts on their
 * received rows, combine) on the CPU backend, with rank threads or one rank per process on any
 * transport ({@code moeyard layer-example}), checked against the same layer computed densely.
 */
package io.moeyard.bench.example;
