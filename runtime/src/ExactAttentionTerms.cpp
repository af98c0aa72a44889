//===- ExactAttentionTerms.cpp - delta terms of exact attention -----------===//
//
// The incremental half of ExactAttention.h: adding and removing one key's
// term for a block of rows (applyTermsToBlock), and finishing a row's output
// from its integer sums (finishRow, which every path uses). The from-scratch
// kernels are in ExactAttention.cpp and attention/.
//
//===----------------------------------------------------------------------===//
#include "ExactAttention.h"
#include "Simd.h"
#include "attention/ExactKernels.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace incnn::runtime::exact {

namespace {

using detail::kShiftBucket;
using detail::kTermScale;

/// Per-thread scratch of applyTermsToBlock and computeRowFromRepeatedKeys,
/// reached once per call: the runtime is position independent, so every
/// thread_local read is a call site to the compiler, which saves the vector
/// registers around it.
struct TermScratch {
  std::vector<float> scores, x, weights, shifts;
  std::vector<int32_t> tops, topSteps, removedTop;
  std::vector<double> p, lanesP;
  std::vector<int32_t> signs;
  std::vector<const double *> v, singleV;
  std::vector<int64_t> order;    // terms reaching several lanes, then one
  std::vector<int64_t> kvOffset; // per head, no divisions
  std::vector<int64_t> rest;     // terms whose keys are not shared
  std::vector<uint32_t> reach;
};

TermScratch &termScratch() {
  static thread_local TermScratch scratch;
  return scratch;
}

/// The shift checks of applyTermsToBlock (a lane's count of top keys is
/// judged after all its additions and removals): x[cell] = score - shift,
/// at most 0, where the term takes part in the lane (only the lanes that
/// stay ok are read), 0 elsewhere.
void checkShifts(const float *scores, const int64_t *rows, const bool *use,
                 const TermRef *terms, int64_t numTerms,
                 const AttentionShape &shape, AttentionState &state, bool *ok,
                 float *x, TermScratch &scratch) {
  constexpr int L = kTermBlock;
  int64_t H = shape.numHeads;
#ifdef INCNN_SIMD_AVX2
  // Lanes are the block's rows; each head's shifts and counts in a vector.
  scratch.shifts.resize(size_t(H * L));
  scratch.tops.resize(size_t(H * L));
  float *shifts = scratch.shifts.data();
  int32_t *tops = scratch.tops.data();
  bool wasOk[L];
  for (int l = 0; l < L; ++l) {
    wasOk[l] = ok[l];
    for (int64_t h = 0; h < H; ++h) { // only ok lanes' rows are this block's
      size_t slot = size_t(rows[l] * H + h);
      shifts[size_t(h * L + l)] = ok[l] ? state.shift[slot] : 0.0f;
      tops[size_t(h * L + l)] = ok[l] ? state.top[slot] : 0;
    }
  }
  // Every (term, head) on its own (no chain through the lanes' liveness):
  // a lane stops if any term it takes breaks the contract or exceeds its
  // shift, or if its count of top keys ends at 0 after a removal from the
  // top bucket (the count only falls once the additions are in, so it
  // reaches 0 exactly when it ends there). A stopped lane's state is
  // recomputed, so what the terms did to it does not matter.
  int32_t okLanes[L];
  for (int l = 0; l < L; ++l)
    okLanes[l] = ok[l] ? -1 : 0;
  const __m256 scale = _mm256_set1_ps(shape.scale),
               maxScore = _mm256_set1_ps(kMaxScore),
               magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)),
               bucket = _mm256_set1_ps(kShiftBucket);
  const __m256i zero = _mm256_setzero_si256();
  const __m256 zeroF = _mm256_setzero_ps();
  __m256i bad = zero;
  // Per head: the change of each lane's count, and the lanes a removal from
  // the top bucket reached.
  scratch.topSteps.assign(size_t(H * L), 0);
  scratch.removedTop.assign(size_t(H * L), 0);
  int32_t *topSteps = scratch.topSteps.data(),
          *removedTop = scratch.removedTop.data();
  for (int64_t t = 0; t < numTerms; ++t) {
    __m256i used =
        _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                               reinterpret_cast<const __m128i *>(use + t * L))),
                           zero);
    const __m256i sign = _mm256_set1_epi32(terms[t].sign);
    for (int64_t h = 0; h < H; ++h) {
      float *xs = x + (t * H + h) * L;
      __m256 score =
          _mm256_mul_ps(_mm256_loadu_ps(scores + (t * H + h) * L), scale);
      __m256 shift = _mm256_loadu_ps(&shifts[size_t(h * L)]);
      // !(|score| <= kMaxScore) (NaN included) or score > shift: stop.
      bad = _mm256_or_si256(
          bad, _mm256_and_si256(
                   used, _mm256_castps_si256(_mm256_or_ps(
                             _mm256_cmp_ps(_mm256_and_ps(score, magnitude),
                                           maxScore, _CMP_NLE_UQ),
                             _mm256_cmp_ps(score, shift, _CMP_GT_OQ)))));
      __m256i inTop = _mm256_and_si256(
          used, _mm256_castps_si256(_mm256_cmp_ps(
                    score, _mm256_sub_ps(shift, bucket), _CMP_GT_OQ)));
      __m256i *step = reinterpret_cast<__m256i *>(&topSteps[size_t(h * L)]);
      _mm256_storeu_si256(step,
                          _mm256_add_epi32(_mm256_loadu_si256(step),
                                           _mm256_and_si256(inTop, sign)));
      if (terms[t].sign < 0) {
        __m256i *removed =
            reinterpret_cast<__m256i *>(&removedTop[size_t(h * L)]);
        _mm256_storeu_si256(
            removed, _mm256_or_si256(_mm256_loadu_si256(removed), inTop));
      }
      // In range for expNonPositive on every lane (a lane that stops here
      // may have score > shift; its weight is never read).
      _mm256_storeu_ps(
          xs, _mm256_and_ps(_mm256_castsi256_ps(used),
                            _mm256_min_ps(_mm256_sub_ps(score, shift), zeroF)));
    }
  }
  __m256i live = _mm256_andnot_si256(
      bad, _mm256_loadu_si256(reinterpret_cast<__m256i *>(okLanes)));
  for (int64_t h = 0; h < H; ++h) {
    __m256i *topAt = reinterpret_cast<__m256i *>(&tops[size_t(h * L)]);
    __m256i top =
        _mm256_add_epi32(_mm256_loadu_si256(topAt),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i *>(
                             &topSteps[size_t(h * L)])));
    _mm256_storeu_si256(topAt, top);
    // The maximum may have dropped a bucket: stop.
    __m256i removed = _mm256_loadu_si256(
        reinterpret_cast<const __m256i *>(&removedTop[size_t(h * L)]));
    live = _mm256_andnot_si256(
        _mm256_andnot_si256(_mm256_cmpgt_epi32(top, zero), removed), live);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i *>(okLanes), live);
  for (int l = 0; l < L; ++l) {
    ok[l] = okLanes[l] != 0;
    if (wasOk[l]) // other lanes may alias rows of other blocks
      for (int64_t h = 0; h < H; ++h)
        state.top[size_t(rows[l] * H + h)] = tops[size_t(h * L + l)];
  }
#else
  (void)scratch;
  auto termAt = [&](int64_t t0) { // additions first, then removals
    int64_t t = t0 % numTerms;
    return (terms[t].sign > 0) == (t0 < numTerms) ? t : -1;
  };
  for (int64_t t0 = 0; t0 < 2 * numTerms; ++t0) {
    int64_t t = termAt(t0);
    if (t < 0)
      continue;
    for (int64_t h = 0; h < H; ++h)
      for (int l = 0; l < L; ++l) {
        size_t cell = size_t((t * H + h) * L + l);
        x[cell] = 0.0f;
        if (!use[t * L + l] || !ok[l])
          continue;
        float score = scores[cell] * shape.scale;
        size_t slot = size_t(rows[l] * H + h);
        float shift = state.shift[slot];
        if (!(std::fabs(score) <= kMaxScore) || score > shift) {
          ok[l] = false; // the shift would rise, or a breach: recompute
          continue;
        }
        if (score > shift - kShiftBucket) {
          state.top[slot] += terms[t].sign;
          if (state.top[slot] <= 0) {
            ok[l] = false; // the maximum may have dropped a bucket
            continue;
          }
        }
        x[cell] = score - shift;
      }
  }
#endif
}

/// Score chains one scoreChains call runs interleaved: enough to cover the
/// FMA latency on two pipes.
constexpr int kScoreChains = 8;

/// run(std::integral_constant<int, n>{}) for 1 <= n <= N.
template <int N, class Run> void dispatchChains(int n, Run &run) {
  if constexpr (N > 1)
    if (n < N)
      return dispatchChains<N - 1>(n, run);
  run(std::integral_constant<int, N>{});
}

/// out[i][l] = the FMA chain over c < hd of v[i][c * kTermBlock + l] *
/// s[i][c], in increasing c as dot(), for i < n <= kScoreChains chains run
/// interleaved. With SharedLanes every chain reads v[0] (one load a step).
template <bool SharedLanes>
void scoreChains(const float *const *v, const float *const *s,
                 float *const *out, int n, int64_t hd) {
  constexpr int L = kTermBlock;
  auto lanes = [&](int i) { return v[SharedLanes ? 0 : i]; };
#if defined(__AVX2__) && defined(__FMA__)
  static_assert(L == 8, "one AVX2 vector of rows");
  auto run = [&](auto chains) {
    constexpr int N = decltype(chains)::value;
    __m256 acc[N];
    for (int i = 0; i < N; ++i)
      acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < hd; ++c) {
      __m256 x[SharedLanes ? 1 : N];
      for (int i = 0; i < (SharedLanes ? 1 : N); ++i)
        x[i] = _mm256_loadu_ps(lanes(i) + c * L);
      for (int i = 0; i < N; ++i)
        acc[i] = _mm256_fmadd_ps(x[SharedLanes ? 0 : i],
                                 _mm256_set1_ps(s[i][c]), acc[i]);
    }
    for (int i = 0; i < N; ++i)
      _mm256_storeu_ps(out[i], acc[i]);
  };
  dispatchChains<kScoreChains>(n, run);
#else
  for (int i = 0; i < n; ++i)
    for (int l = 0; l < L; ++l) {
      float acc = 0.0f;
      for (int64_t c = 0; c < hd; ++c)
        acc = std::fma(lanes(i)[c * L + l], s[i][c], acc);
      out[i][l] = acc;
    }
#endif
}

/// Collects score chains and runs them kScoreChains at a time.
struct PairScores {
  const float *v[kScoreChains], *s[kScoreChains];
  float *out[kScoreChains];
  int n = 0;
  int64_t hd;
  explicit PairScores(int64_t hd) : hd(hd) {}
  void add(const float *lanes, const float *scalars, float *to) {
    v[n] = lanes;
    s[n] = scalars;
    out[n] = to;
    if (++n == kScoreChains)
      flush();
  }
  void flush() {
    if (n > 0)
      scoreChains<false>(v, s, out, n, hd);
    n = 0;
  }
};

} // namespace

void transposeBlockRows(const float *const *rows, int64_t width, float *qT) {
  constexpr int L = kTermBlock;
  int64_t c = 0;
#ifdef INCNN_SIMD_AVX2
  static_assert(L == 8, "one AVX2 vector of rows");
  for (; c + 8 <= width; c += 8) {
    __m256 t[8];
    simd::transpose8x8(rows, c, t);
    for (int l = 0; l < 8; ++l)
      _mm256_storeu_ps(qT + (c + l) * L, t[l]);
  }
#endif
  for (; c < width; ++c)
    for (int l = 0; l < L; ++l)
      qT[c * L + l] = rows[l][c];
}

void transposeTermKeys(const TermRef *terms, int64_t count,
                       const AttentionShape &shape, TermKeys &keys) {
  keys.ldk = 0;
  keys.kT.clear();
  if (!detail::kernels().blockTermScores || count < detail::kLaneTerms)
    return;
  int64_t width = shape.kvWidth();
  keys.ldk = count;
  keys.kT.resize(size_t(width * count));
  for (int64_t t = 0; t < count; ++t)
    for (int64_t c = 0; c < width; ++c)
      keys.kT[size_t(c * count + t)] = terms[t].kRot[c];
}

void applyTermsToBlock(const float *qT, const int64_t *rows, const bool *use,
                       const TermRef *terms, int64_t numTerms,
                       const AttentionShape &shape, AttentionState &state,
                       bool *ok, const SharedTerms *shared, int numShared) {
  constexpr int L = kTermBlock;
  int64_t H = shape.numHeads, hd = shape.headDim;
  size_t cells = size_t(numTerms * H * L); // [term][head][lane]
  TermScratch &scratch = termScratch();
  scratch.scores.resize(cells);
  scratch.x.resize(cells);
  scratch.weights.resize(cells);
  scratch.kvOffset.resize(size_t(H));
  float *scores = scratch.scores.data(), *x = scratch.x.data(),
        *weights = scratch.weights.data();
  int64_t *kvOffset = scratch.kvOffset.data();
  for (int64_t h = 0; h < H; ++h)
    kvOffset[size_t(h)] = shape.kvHeadOf(h) * hd;
  // Scores: every (term, head) is an independent FMA chain over c, in
  // increasing c as dot(). The shared terms' keys, transposed, give vectors
  // of terms where those are wider than a block's rows. Groups of
  // kScoreChains terms of a head run interleaved, sharing each load of the
  // head's queries; the (term, head) pairs left over run kScoreChains at a
  // time across heads, so that a few terms do not leave one chain's latency
  // exposed.
  const detail::KernelTable &kernels = detail::kernels();
  // The terms scored here, whose keys are not read transposed.
  scratch.rest.resize(size_t(numTerms));
  int64_t *rest = scratch.rest.data(), numRest = 0, next = 0;
  for (int i = 0; i < numShared && kernels.blockTermScores; ++i) {
    const SharedTerms &s = shared[i];
    int64_t laneTerms = s.count / detail::kLaneTerms * detail::kLaneTerms;
    if (laneTerms == 0 || s.keys->kT.empty()) // too few, or not transposed
      continue;
    for (int64_t h = 0; h < H; ++h)
      kernels.blockTermScores(qT + h * hd * L,
                              s.keys->kT.data() +
                                  kvOffset[size_t(h)] * s.keys->ldk + s.column,
                              s.keys->ldk, laneTerms, hd,
                              &scores[size_t((s.at * H + h) * L)], H * L);
    for (; next < s.at; ++next)
      rest[numRest++] = next;
    next = s.at + laneTerms;
  }
  for (; next < numTerms; ++next)
    rest[numRest++] = next;
  int64_t grouped = numRest / kScoreChains * kScoreChains;
  for (int64_t h = 0; h < H; ++h) {
    const float *q = qT + h * hd * L;
    for (int64_t i0 = 0; i0 < grouped; i0 += kScoreChains) {
      const float *k[kScoreChains];
      float *out[kScoreChains];
      for (int i = 0; i < kScoreChains; ++i) {
        int64_t t = rest[i0 + i];
        k[i] = terms[t].kRot + kvOffset[size_t(h)];
        out[i] = &scores[size_t((t * H + h) * L)];
      }
      scoreChains<true>(&q, k, out, kScoreChains, hd);
    }
  }
  PairScores pairs(hd);
  for (int64_t i = grouped; i < numRest; ++i)
    for (int64_t h = 0; h < H; ++h)
      pairs.add(qT + h * hd * L, terms[rest[i]].kRot + kvOffset[size_t(h)],
                &scores[size_t((rest[i] * H + h) * L)]);
  pairs.flush();
  // Added keys first, then removed ones: a lane whose shift would move, or
  // that breaks the contract, stops (its row is recomputed; its state may be
  // half updated). With the additions counted first, `top` falls to 0 only if
  // it ends at 0, so a top key replaced by one in the same bucket (a changed
  // key that stays the row's maximum) keeps the shift.
  checkShifts(scores, rows, use, terms, numTerms, shape, state, ok, x, scratch);
  detail::kernels().expNonPositive(x, int64_t(cells), weights);
  // Per head, the terms that reach two or more lanes go through the kernel
  // together (one load of a value column serves a group of rows; a lane a
  // term misses weighs it 0), and a term that reaches one lane takes that
  // lane's own pass.
  scratch.lanesP.resize(size_t(numTerms * L));
  scratch.v.resize(size_t(numTerms));
  scratch.order.resize(size_t(numTerms));
  scratch.p.resize(size_t(numTerms));
  scratch.singleV.resize(size_t(numTerms));
  scratch.reach.resize(size_t(numTerms));
  scratch.signs.resize(size_t(numTerms));
  double *lanesP = scratch.lanesP.data(), *p = scratch.p.data();
  const double **v = scratch.v.data(), **singleV = scratch.singleV.data();
  int64_t *order = scratch.order.data();
  uint32_t *reach = scratch.reach.data();
  int32_t *signs = scratch.signs.data();
  static_assert(L == 8, "weighTerms weighs 8 lanes");
  static_assert(L <= detail::kMaxTermRows, "a block's rows in one call");
  // Lane masks (bit l of reach[t] when term t takes part in lane l), and
  // the terms that take part: those reaching two or more lanes first, then
  // those reaching one (the same for every head).
  auto oneLane = [](uint32_t bits) { return (bits & (bits - 1)) == 0; };
  int64_t numMulti = 0;
  uint32_t taken = 0;
  for (int64_t t = 0; t < numTerms; ++t) {
    uint32_t bits = 0;
    for (int l = 0; l < L; ++l)
      bits |= uint32_t(ok[l] && use[t * L + l]) << l;
    reach[size_t(t)] = bits;
    signs[t] = terms[t].sign;
    if (!oneLane(bits)) {
      order[numMulti++] = t;
      taken |= bits;
    }
  }
  int64_t numReached = numMulti;
  for (int64_t t = 0; t < numTerms; ++t)
    if (reach[size_t(t)] != 0 && oneLane(reach[size_t(t)]))
      order[numReached++] = t;
  for (int64_t h = 0; h < H; ++h) {
    int64_t offset = kvOffset[size_t(h)];
    // Each term's weights for the block's lanes, 0 where it does not take
    // part: their rounded sum goes to the denominators, and the weights,
    // signed, to lanesP[i * L + l] for order[i].
    int64_t denom[L];
    kernels.weighTerms(&weights[size_t(h * L)], H * L, reach, signs, order,
                       numReached, lanesP, denom);
    for (int64_t i = 0; i < numMulti; ++i)
      v[size_t(i)] = terms[order[i]].v + offset;
    const double *pRows[L];
    int64_t *numerRows[L];
    int64_t numRows = 0;
    for (int l = 0; l < L; ++l) {
      if (!ok[l])
        continue;
      size_t slot = size_t(rows[l] * H + h);
      state.denom[slot] += denom[l];
      int64_t *numer = &state.numer[slot * size_t(hd)];
      if (taken >> l & 1) {
        pRows[numRows] = lanesP + l;
        numerRows[numRows++] = numer;
      }
      int64_t n = 0;
      for (int64_t i = numMulti; i < numReached; ++i) {
        int64_t t = order[i];
        if (reach[size_t(t)] != 1u << l)
          continue;
        p[size_t(n)] = lanesP[size_t(i * L + l)];
        singleV[size_t(n++)] = terms[t].v + offset;
      }
      if (n > 0) {
        const double *pRow = p;
        kernels.accumulateTermRows(&pRow, 1, singleV, n, hd, &numer, 1);
      }
    }
    if (numRows > 0)
      kernels.accumulateTermRows(pRows, L, v, numMulti, hd, numerRows, numRows);
  }
}

void applyTermToBlock(const float *qT, const int64_t *rows, const bool *use,
                      const float *kRotRow, const float *vRow,
                      const AttentionShape &shape, AttentionState &state,
                      int sign, bool *ok) {
  std::vector<double> v(vRow, vRow + shape.kvWidth());
  TermRef term{kRotRow, v.data(), sign};
  applyTermsToBlock(qT, rows, use, &term, 1, shape, state, ok);
}

void transposeDistinctKeys(const float *const *keys, int64_t numKeys,
                           int64_t width, std::vector<float> &keysT,
                           ThreadPool *pool) {
  constexpr int L = kTermBlock;
  constexpr int64_t kBlocksPerTask = 16;
  int64_t blocks = (numKeys + L - 1) / L;
  keysT.resize(size_t(blocks * width * L));
  auto rowsOf = [&](int64_t b, const float **rows) {
    for (int l = 0; l < L; ++l)
      rows[l] = keys[std::min(b * L + l, numKeys - 1)];
  };
  parallelFor(
      pool, (blocks + kBlocksPerTask - 1) / kBlocksPerTask, [&](int64_t task) {
        int64_t end = std::min(blocks, (task + 1) * kBlocksPerTask);
        for (int64_t b = task * kBlocksPerTask; b < end; ++b) {
          const float *rows[L];
          if (b + 1 < end) { // table rows, scattered: load the next ones
            rowsOf(b + 1, rows);
            for (int l = 0; l < L; ++l)
              for (int64_t c = 0; c < width; c += 16)
                __builtin_prefetch(rows[l] + c);
          }
          rowsOf(b, rows);
          transposeBlockRows(rows, width, keysT.data() + b * width * L);
        }
      });
}

bool computeRowFromRepeatedKeys(const float *qRot, const float *const *values,
                                const int32_t *counts, int64_t numKeys,
                                const float *keysT, const AttentionShape &shape,
                                AttentionState &state, int64_t row, float *out,
                                int64_t kvBegin, int64_t kvEnd) {
  constexpr int L = kTermBlock;
  int64_t H = shape.numHeads, hd = shape.headDim, kvw = shape.kvWidth();
  int64_t blocks = (numKeys + L - 1) / L, padded = blocks * L;
  TermScratch &scratch = termScratch();
  scratch.scores.resize(size_t(H * padded));
  scratch.x.resize(size_t(padded));
  scratch.weights.resize(size_t(padded));
  scratch.p.resize(size_t(numKeys));
  float *scores = scratch.scores.data(), *x = scratch.x.data(),
        *weights = scratch.weights.data();
  double *termWeights = scratch.p.data();
  // Scores, L keys at a time (lanes past numKeys are never read): the
  // transposed keys are scoreChains' lanes, the heads' queries its scalars.
  int64_t perKv = H / shape.numKvHeads;
  kvEnd = std::min(kvEnd, shape.numKvHeads);
  int64_t hBegin = kvBegin * perKv, hEnd = kvEnd * perKv;
  if (perKv >= kScoreChains) { // a kv head's queries share each key load
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t g = kvBegin; g < kvEnd; ++g)
        for (int64_t h0 = g * perKv; h0 < (g + 1) * perKv; h0 += kScoreChains) {
          int n = int(std::min<int64_t>(kScoreChains, (g + 1) * perKv - h0));
          const float *queries[kScoreChains];
          float *out[kScoreChains];
          for (int i = 0; i < n; ++i) {
            queries[i] = qRot + (h0 + i) * hd;
            out[i] = &scores[size_t((h0 + i) * padded + b * L)];
          }
          const float *keys = keysT + (b * kvw + g * hd) * L;
          scoreChains<true>(&keys, queries, out, n, hd);
        }
  } else { // few heads a kv head: chains over key blocks too
    PairScores pairs(hd);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t h = hBegin; h < hEnd; ++h)
        pairs.add(keysT + (b * kvw + (h / perKv) * hd) * L, qRot + h * hd,
                  &scores[size_t(h * padded + b * L)]);
    pairs.flush();
  }
  const detail::KernelTable &kernels = detail::kernels();
  for (int64_t h = hBegin; h < hEnd; ++h) {
    float *s = &scores[size_t(h * padded)];
    float high = -INFINITY;
    for (int64_t d = 0; d < numKeys; ++d) {
      s[d] *= shape.scale;
      if (!(std::fabs(s[d]) <= kMaxScore))
        return false;
      high = std::max(high, s[d]);
    }
    float shift = std::ceil(high / kShiftBucket) * kShiftBucket + 0.0f;
    int64_t top = 0;
    for (int64_t d = 0; d < numKeys; ++d) {
      top += s[d] > shift - kShiftBucket ? counts[d] : 0;
      x[size_t(d)] = s[d] - shift;
    }
    kernels.expNonPositive(x, numKeys, weights);
    size_t slot = size_t(row * H + h);
    int64_t denom = 0;
    for (int64_t d = 0; d < numKeys; ++d) {
      float P = weights[size_t(d)] * kTermScale;
      denom += counts[d] * int64_t(std::nearbyint(P));
      termWeights[size_t(d)] = double(P);
    }
    kernels.repeatedKeyTerms(termWeights, counts, values,
                             shape.kvHeadOf(h) * hd, numKeys, hd,
                             &state.numer[slot * size_t(hd)]);
    state.shift[slot] = shift;
    state.top[slot] = int32_t(top);
    state.denom[slot] = denom;
  }
  if (hEnd > hBegin)
    kernels.finishHeads(&state.numer[size_t((row * H + hBegin) * hd)],
                        &state.denom[size_t(row * H + hBegin)], hEnd - hBegin,
                        hd, out + hBegin * hd);
  return true;
}

void finishRow(const AttentionShape &shape, const AttentionState &state,
               int64_t row, float *out) {
  // One reciprocal per head; every path finishes rows with this function.
  int64_t H = shape.numHeads, hd = shape.headDim;
  detail::kernels().finishHeads(&state.numer[size_t(row * H * hd)],
                                &state.denom[size_t(row * H)], H, hd, out);
}

} // namespace incnn::runtime::exact
