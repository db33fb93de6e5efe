package io.moeyard.dispatch;

import io.moeyard.engine.DType;

/**
 * What each rank tells the world at the start of a dispatch: whether its input is valid, its
 * payload format, its counts (so every rank can compute every offset), and how many rows its
 * receive buffer can hold (-1 = dispatch allocates it).
 */
record Announcement(
    String problem, int hidden, DType dtype, int[] sendCounts, int[] pairsTo, int[] selectionsTo, long capacityRows) {}
