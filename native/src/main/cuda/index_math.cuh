// moeyard native: index math shared by the kernels (device) and the JNI host entry points (host).
//
// Every function here is __host__ __device__ (plain inline in host-only translation units), pure,
// and works on plain int arrays, so the host unit tests exercise exactly the code the kernels run.
//
// Conventions (shuffle-engine/docs/data-path.md):
//   R ranks, P physical slots, S = P / R slots per rank; slot p lives on rank p / S, local slot p % S.
//   ExpertMap as CSR: the physical slots of logical expert e are slots[offs[e] .. offs[e+1]), ascending.
//   slotIds[t*K + k]: the physical slot chosen for selection (t, k), or -1 (not routed).
//   counts[r*S + ls] (on destination rank d): N[r][d][ls], tokens of rank r for local slot ls of d.
#pragma once

#include "config.cuh"

#if defined(__CUDACC__)
#define MY_HD __host__ __device__ __forceinline__
#else
#define MY_HD inline
#endif

namespace moeyard {

MY_HD int rank_of_slot(int p, int S) { return p / S; }
MY_HD int local_slot_of(int p, int S) { return p % S; }
MY_HD int node_of_rank(int r, int localRanks) { return r / localRanks; }

// Replica choice for token t of source rank r and logical expert e:
// candidates = e's slots on rank r; if none, e's slots on r's node; if none, all of e's slots;
// pick candidates[(r + t) % candidates.length] (candidates in the map's ascending order).
// Returns -1 when e has no slot at all (rejected on the Java side before kernels run).
MY_HD int choose_replica(const int* offs, const int* slots, int S, int localRanks, int r, int t,
                         int e) {
  const int b = offs[e];
  const int n = offs[e + 1] - b;
  if (n <= 0) return -1;
  const int myNode = node_of_rank(r, localRanks);
  int onRank = 0, onNode = 0;
  for (int i = 0; i < n; ++i) {
    const int d = rank_of_slot(slots[b + i], S);
    onRank += (d == r);
    onNode += (node_of_rank(d, localRanks) == myNode);
  }
  const int level = onRank > 0 ? 0 : (onNode > 0 ? 1 : 2);
  const int cnt = level == 0 ? onRank : (level == 1 ? onNode : n);
  const int want = (int)(((long long)r + (long long)t) % cnt);
  int seen = 0;
  for (int i = 0; i < n; ++i) {
    const int d = rank_of_slot(slots[b + i], S);
    const bool isCand = level == 0 ? (d == r)
                        : level == 1 ? (node_of_rank(d, localRanks) == myNode)
                                     : true;
    if (isCand) {
      if (seen == want) return slots[b + i];
      ++seen;
    }
  }
  return -1;  // unreachable
}

// ---- FUSCO receive layout on destination rank d (expert-major, source-rank-major inside a slot) ----

// Tot[ls] = sum_r N[r][d][ls].
MY_HD int recv_slot_total(const int* counts, int R, int S, int ls) {
  int s = 0;
  for (int r = 0; r < R; ++r) s += counts[r * S + ls];
  return s;
}

// sum_{e' < ls} Tot[e'].
MY_HD int recv_slot_base(const int* counts, int R, int S, int ls) {
  int s = 0;
  for (int e = 0; e < ls; ++e) s += recv_slot_total(counts, R, S, e);
  return s;
}

// sum_{r' < r} N[r'][d][ls].
MY_HD int recv_src_base(const int* counts, int S, int r, int ls) {
  int s = 0;
  for (int q = 0; q < r; ++q) s += counts[q * S + ls];
  return s;
}

// The receive row of the j-th token (ascending token order) that rank r sends for local slot ls:
// sum_{e'<ls} Tot[e'] + sum_{r'<r} N[r'][d][ls] + j.
MY_HD int recv_row(const int* counts, int R, int S, int r, int ls, int j) {
  return recv_slot_base(counts, R, S, ls) + recv_src_base(counts, S, r, ls) + j;
}

// ---- token-rank pairs (dedup) ----

// True when selection k is the first of its row that goes to its destination rank.
MY_HD bool first_of_rank(const int* row, int K, int S, int k) {
  const int p = row[k];
  if (p < 0) return false;
  const int d = rank_of_slot(p, S);
  for (int q = 0; q < k; ++q)
    if (row[q] >= 0 && rank_of_slot(row[q], S) == d) return false;
  return true;
}

// Number of distinct destination ranks of one token (its token-rank pairs).
MY_HD int pair_count(const int* row, int K, int S) {
  int c = 0;
  for (int k = 0; k < K; ++k) c += first_of_rank(row, K, S, k) ? 1 : 0;
  return c;
}

// Index of destination rank d among the token's destination ranks in ascending order.
MY_HD int pair_rank_index(const int* row, int K, int S, int d) {
  int c = 0;
  for (int k = 0; k < K; ++k)
    if (first_of_rank(row, K, S, k) && rank_of_slot(row[k], S) < d) ++c;
  return c;
}

// Does the token select a slot on rank d?
MY_HD bool row_has_rank(const int* row, int K, int S, int d) {
  for (int k = 0; k < K; ++k)
    if (row[k] >= 0 && rank_of_slot(row[k], S) == d) return true;
  return false;
}

MY_HD bool row_has_slot(const int* row, int K, int p) {
  for (int k = 0; k < K; ++k)
    if (row[k] == p) return true;
  return false;
}

// Bit d set when the token selects a slot on rank d (R <= 64, cfg::kMaxRanks).
MY_HD unsigned long long rank_mask(const int* row, int K, int S) {
  unsigned long long m = 0ull;
  for (int k = 0; k < K; ++k)
    if (row[k] >= 0) m |= 1ull << rank_of_slot(row[k], S);
  return m;
}

MY_HD int popcount64(unsigned long long x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x);
#else
  return __builtin_popcountll(x);
#endif
}

// pair_count and pair_rank_index from a rank mask.
MY_HD int pair_count_mask(unsigned long long m) { return popcount64(m); }
MY_HD int pair_rank_index_mask(unsigned long long m, int d) {
  return popcount64(m & ((1ull << d) - 1ull));
}

// Tokens in [tBegin, t) whose rank mask has bit d.
MY_HD int count_before_rank_mask(const unsigned long long* masks, int tBegin, int t, int d) {
  int c = 0;
  for (int u = tBegin; u < t; ++u) c += (int)((masks[u] >> d) & 1ull);
  return c;
}

// Tokens in [tBegin, t) of a slotIds array (rows of K) that select physical slot p.
MY_HD int count_before_slot(const int* slotIds, int K, int tBegin, int t, int p) {
  int c = 0;
  for (int u = tBegin; u < t; ++u) c += row_has_slot(slotIds + (long long)u * K, K, p) ? 1 : 0;
  return c;
}

// ---- nodes (the home reduction's second level) ----

// Bit d set for every rank d on node m (rank = node * localRanks + local; R <= 64, cfg::kMaxRanks).
MY_HD unsigned long long node_rank_bits(int m, int localRanks) {
  const unsigned long long run = localRanks >= 64 ? ~0ull : (1ull << localRanks) - 1ull;
  return run << (m * localRanks);
}

// A token's partials at home come in ascending destination rank (the set bits of its rank mask),
// so each node's partials are one run. Bit k of the result is set when partial k ends its node's
// run: where the home sum rounds a node partial and adds it to the total.
MY_HD unsigned long long node_run_ends(unsigned long long rankMask, int R, int localRanks) {
  unsigned long long ends = 0ull;
  int k = 0;
  for (int m = 0; m * localRanks < R; ++m) {
    const int c = popcount64(rankMask & node_rank_bits(m, localRanks));
    k += c;
    if (c > 0) ends |= 1ull << (k - 1);
  }
  return ends;
}

// ---- chunk ranges ----

MY_HD int chunk_count(long long n, int size) { return (int)((n + size - 1) / size); }
MY_HD long long chunk_begin(int c, int size) { return (long long)c * size; }
MY_HD long long chunk_end(int c, long long n, int size) {
  const long long e = (long long)(c + 1) * size;
  return e < n ? e : n;
}

// prefix[0..n] ascending (exclusive prefix of n chunk sizes); returns the chunk c that holds row,
// i.e. the largest c with prefix[c] <= row (empty chunks are skipped), or -1 when row is outside.
MY_HD int find_chunk(const int* prefix, int n, long long row) {
  if (row < prefix[0] || row >= prefix[n]) return -1;
  int lo = 0, hi = n;  // invariant: prefix[lo] <= row < prefix[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (prefix[mid] <= row) lo = mid; else hi = mid;
  }
  return lo;
}

// Ascending insertion sort of a few ints (the rows of one token-rank pair).
MY_HD void sort_small(int* a, int n) {
  for (int i = 1; i < n; ++i) {
    const int v = a[i];
    int j = i - 1;
    while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; --j; }
    a[j + 1] = v;
  }
}

}  // namespace moeyard
