// moeyard native: index math of the node-level (two-hop) path, shared by relay.cu (device) and the
// JNI host entry points (host unit tests), like index_math.cuh.
//
// R ranks, L per node, M = R / L nodes; rank s = (node n, local l), s = n * L + l. Source s's relay
// on node m is (m, l). A rank keeps one slot per remote node (its message to / from that node, the
// staging of the source it relays from there, its node partials): node m's slot on node n is
// remote_slot(m, n).
//
// Message of source s to node m (shuffle-engine/docs/data-path.md, "The node-level path"):
//   [0, 4TK) expert ids, [4TK, 8TK) weights, [align64(8TK), + n rows) rows, then n rows' FP8 scales,
// n = s's tokens with a pair on node m; token t's row there is node_row (its index among them).
#pragma once

#include "index_math.cuh"

namespace moeyard {

MY_HD int relay_rank(int m, int s, int L) { return m * L + s % L; }
MY_HD int remote_slot(int m, int n) { return m < n ? m : m - 1; }

// Bit m set when a token with destination ranks rankMask has a pair on node m (M <= 64).
MY_HD unsigned long long node_mask(unsigned long long rankMask, int R, int L) {
  unsigned long long nm = 0ull;
  for (int m = 0; m * L < R; ++m)
    if ((rankMask & node_rank_bits(m, L)) != 0ull) nm |= 1ull << m;
  return nm;
}

// Does the token (its row of slot ids) have a pair on node m?
MY_HD bool token_on_node(const int* row, int K, int S, int L, int m) {
  return (rank_mask(row, K, S) & node_rank_bits(m, L)) != 0ull;
}

// ---- the message ----
MY_HD long long msg_rows_at(int T, int K) { return ((8LL * T * K) + 63) & ~63LL; }
MY_HD long long msg_scales_at(int T, int K, int n, int rowBytes) {
  return msg_rows_at(T, K) + (long long)n * rowBytes;
}
// A message with no rows is not sent (0 bytes).
MY_HD long long msg_bytes(int T, int K, int n, int rowBytes, int scaleCols) {
  return n == 0 ? 0LL : msg_scales_at(T, K, n, rowBytes) + 4LL * n * scaleCols;
}

// ---- the relay's node sum (combine) ----
// Source s's pairs on node m reach the relay's staging as one run per rank p of node m, in s's
// destination order: the pair of token t with rank p lands at run_start(p) + pairPos(t, p), where
// run_start(p) = sum over ranks q of node m below p of s's pairs to q (pairsTo = s's layout totals
// from index P on).
MY_HD int run_start(const int* pairsTo, int m, int L, int p) {
  int s = 0;
  for (int q = m * L; q < p; ++q) s += pairsTo[q];
  return s;
}

// ---- the home sum with relayed node partials ----
// Home s on node n sums token t's terms in node order: on its own node n, t's pair partials there
// (ascending rank, pair index pair_rank_index_mask), on every other node m with a pair, one node
// partial received from the relay there. Terms of a token:
MY_HD int relay_home_terms(unsigned long long rankMask, int n, int R, int L) {
  const int own = popcount64(rankMask & node_rank_bits(n, L));
  return own + popcount64(node_mask(rankMask, R, L) & ~(1ull << n));
}

// The node of term k; *pairIndex: for a term of the own node, its pair's index among the token's
// pairs (its partial's place at home), else -1 (a received node partial).
MY_HD int relay_home_term(unsigned long long rankMask, int n, int R, int L, int k, int* pairIndex) {
  *pairIndex = -1;
  for (int m = 0; m * L < R; ++m) {
    const unsigned long long bits = rankMask & node_rank_bits(m, L);
    const int c = m == n ? popcount64(bits) : (bits != 0ull ? 1 : 0);
    if (k < c) {
      if (m == n) *pairIndex = pair_rank_index_mask(rankMask, n * L) + k;
      return m;
    }
    k -= c;
  }
  return -1;
}

// Bit k set where term k ends its node's run (where the home sum folds a node partial).
MY_HD unsigned long long relay_home_run_ends(unsigned long long rankMask, int n, int R, int L) {
  unsigned long long ends = 0ull;
  int k = 0;
  for (int m = 0; m * L < R; ++m) {
    const unsigned long long bits = rankMask & node_rank_bits(m, L);
    const int c = m == n ? popcount64(bits) : (bits != 0ull ? 1 : 0);
    k += c;
    if (c > 0) ends |= 1ull << (k - 1);
  }
  return ends;
}

}  // namespace moeyard
