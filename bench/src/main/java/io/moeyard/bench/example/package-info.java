/**
 * The integration guide engines copy: a whole MoE layer (router, dispatch, experts on their
 * received rows, combine) on the embedded backend, checked against the same layer computed
 * densely.
 */
package io.moeyard.bench.example;
