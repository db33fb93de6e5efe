/**
 * Transports: how ranks meet and reach each other's memory. {@link io.moeyard.engine.transport.Transport}
 * is the SPI (an all-gather that doubles as a barrier, abort, and whether peer stores are
 * possible); {@link io.moeyard.engine.transport.CpuWorld} is the embedded in-JVM world. Every wait
 * is bounded: a rank that never arrives makes the others fail with a timeout naming it.
 */
package io.moeyard.engine.transport;
