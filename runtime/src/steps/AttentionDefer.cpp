//===- AttentionDefer.cpp - deferred, certified attention updates ---------===//
//
// Change rule (part of attention_update, where the program's certificate
// chain says `defer`): a candidate row — a kept row with an unchanged query
// that attends to a changed key — is not updated when a bound proves that no
// code of the VQ its output feeds can flip. The bound reads only the row's
// query, its softmax shift M and lower bounds of its denominator L and count
// `top` (never its numerators): for each term (a key added or removed) and
// head, one dot product with the query bounds the key's weight, hence how
// far the term moves the head's output. The move, through ||W||_2, is
// charged to the row's budget, and the row goes stale: the terms it skipped
// wait in the certificate's pool. When a bound fails, the row catches up
// (catchUpBlock: its pending terms, oldest first) before it takes the
// edit's terms; when it is recomputed in full, they are dropped. The
// argument, with every rounding, is in docs/exactness.md ("Deferred
// updates").
//
//===----------------------------------------------------------------------===//
#include "../Simd.h"
#include "../attention/ExactKernels.h"
#include "AttentionStep.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>

namespace incnn::runtime {

namespace {

constexpr double kUnit = 0x1p-24;                    ///< float's unit roundoff
constexpr double kScale = exact::detail::kTermScale; ///< P = exp(s - M) * 2^26
constexpr double kBucket = exact::detail::kShiftBucket;
constexpr double kExpSlack = 1 + 0x1p-20; ///< cephesExp <= exp * this
/// Norms summed in double from floats, times this, are upper bounds.
constexpr double kNormSlack = 1 + 1e-12;
/// Rows reached by more terms than this take the exact update (a bound per
/// term and head costs about what the exact update of the term does).
constexpr size_t kMaxBoundedTerms = 32;
/// Room for the pending terms of a row that first goes stale.
constexpr size_t kFirstPendingCapacity = 16;
/// Blocks of candidate rows bounded together by one task.
constexpr int64_t kDeferChunk = 32;

/// A term's key and value norms per kv head, in double.
struct TermNorms {
  const Term *term = nullptr;
  int sign = 1;
  std::vector<double> key, value; ///< [Hkv]
};

TermNorms normsOf(const AttentionStep &a, const Term &t, int sign) {
  TermNorms n;
  n.term = &t;
  n.sign = sign;
  n.key.assign(size_t(a.shape.numKvHeads), 0.0);
  n.value.assign(size_t(a.shape.numKvHeads), 0.0);
  for (int64_t g = 0; g < a.shape.numKvHeads; ++g) {
    double kk = 0, vv = 0;
    for (int64_t c = g * a.hd; c < (g + 1) * a.hd; ++c) {
      kk += double(t.kRot[size_t(c)]) * double(t.kRot[size_t(c)]);
      vv += t.v[size_t(c)] * t.v[size_t(c)];
    }
    n.key[size_t(g)] = std::sqrt(kk) * kNormSlack;
    n.value[size_t(g)] = std::sqrt(vv) * kNormSlack;
  }
  return n;
}

/// What underflow can take from a float chain of n products and n sums
/// (2^-150 per operation at most), absolute: added to sums of squares and,
/// twice (the kernels' chain and ours), to score errors.
double underflow(int64_t n) { return double(2 * n + 2) * 0x1p-150; }

double dotDouble(const float *x, const float *y, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= n; c += 4)
    for (int l = 0; l < 4; ++l)
      s[l] += double(x[c + l]) * double(y[c + l]);
  for (; c < n; ++c)
    s[0] += double(x[c]) * double(y[c]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/// x . y in float with eight partial sums: |error| <= (n + 2) u sum |x y|
/// whatever the order of the additions.
float dotFloat(const float *x, const float *y, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l)
      s[l] += x[c + l] * y[c + l];
  for (; c < n; ++c)
    s[0] += x[c] * y[c];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/// Upper bounds of ||out_h|| of a finished output row, per head.
void outputNorms(const AttentionStep &a, const float *out, double *norms) {
  int64_t hd = a.hd;
  double normSlack = 1 + 2 * double(hd + 2) * kUnit * 1.01;
  for (int64_t h = 0; h < a.shape.numHeads; ++h) {
    const float *o = out + h * hd;
    norms[h] =
        std::sqrt(double(dotFloat(o, o, hd)) * normSlack + underflow(hd)) *
        (1 + 4 * kUnit);
  }
}

constexpr int kLanes = exact::kTermBlock;
static_assert(kLanes == 8,
              "one simd::F8 of scores, two simd::D4 chains per head");

/// The bounds of a block of up to kLanes candidate rows, one lane per row,
/// computed together: each term's scores for the block in one pass over the
/// transposed queries, then the same arithmetic per lane with no branches
/// (a failed check clears the lane's `alive`), so that the lane loops
/// vectorize. One per task, loaded for each block.
struct BlockBound {
  const AttentionStep &a;
  const Certificate &cert;
  double keyCount;   ///< keys any state of a row holds, at most
  double scoreSlack; ///< per unit of ||q_h|| ||k_h||: the kernels' and ours
  double scoreFloor; ///< and their underflow, absolute
  int64_t rows[kLanes], oldPos[kLanes];
  bool valid[kLanes];
  std::vector<float> qT, qRot, zeroRow, out; ///< queries [qw][kLanes]; scratch
  std::vector<double> norms;                 ///< scratch, [H]
  std::vector<double> scores;                ///< scratch, [H * kLanes]
  std::vector<simd::D4> chainX;              ///< scratch, [2H]
  std::vector<simd::I4> chainOk;             ///< scratch, [2H]
  /// [h * kLanes + l]: ||q_h|| (upper bound), shift M, lower bounds of L and
  /// top, ||output_h|| now for rows that are not stale (else infinite).
  std::vector<double> qNorm, shift, lowL, lowTop, outNorm;
  double drift[kLanes];   ///< of the VQ input, summed over terms
  double alive[kLanes];   ///< 1 while every check passed, else 0
  uint64_t terms[kLanes]; ///< terms bounded per lane

  BlockBound(const AttentionStep &a, const Certificate &cert, double keyCount)
      : a(a), cert(cert), keyCount(keyCount) {
    size_t H = size_t(a.shape.numHeads);
    // The kernels' score is an FMA chain of hd products times the scale;
    // ours a chain of separate multiplies and adds.
    scoreSlack =
        double(2 * a.hd + 5) * kUnit * 1.01 * std::fabs(double(a.shape.scale));
    scoreFloor =
        2 * underflow(a.hd) * std::max(1.0, std::fabs(double(a.shape.scale)));
    qT.resize(size_t(a.qw * kLanes));
    qRot.resize(a.shape.ropeTheta != 0.0f ? size_t(kLanes * a.qw) : 0);
    zeroRow.assign(size_t(a.qw), 0.0f);
    out.resize(size_t(a.qw));
    norms.resize(H);
    scores.resize(H * kLanes);
    chainX.resize(2 * H);
    chainOk.resize(2 * H);
    for (std::vector<double> *v : {&qNorm, &shift, &lowL, &lowTop, &outNorm})
      v->assign(H * kLanes, 0.0);
  }

  /// Lanes: candidates [first, first + count) of `candidates`.
  void load(const EditPlan &plan, const std::vector<int64_t> &candidates,
            size_t first, size_t count) {
    int64_t H = a.shape.numHeads, hd = a.hd;
    const float *queries[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      valid[l] = size_t(l) < count;
      rows[l] = valid[l] ? candidates[first + size_t(l)] : 0;
      oldPos[l] = valid[l] ? plan.from[size_t(rows[l])] : 0;
      alive[l] = valid[l] && std::isfinite(cert.budget[size_t(rows[l])]);
      drift[l] = 0;
      terms[l] = 0;
      queries[l] = valid[l] ? a.q.row(rows[l]) : zeroRow.data();
      if (valid[l] && a.shape.ropeTheta != 0.0f) {
        float *rotated = qRot.data() + l * a.qw;
        std::copy(queries[l], queries[l] + a.qw, rotated);
        exact::rotateRow(rotated, H, hd, a.shape.ropeTheta, rows[l]);
        queries[l] = rotated;
      }
    }
    exact::transposeBlockRows(queries, a.qw, qT.data());
    double normSlack = 1 + 2 * double(hd + 2) * kUnit * 1.01;
    for (int64_t h = 0; h < H; ++h) {
      simd::F8 sq = {};
      for (int64_t c = h * hd; c < (h + 1) * hd; ++c) {
        simd::F8 q;
        std::memcpy(&q, &qT[size_t(c * kLanes)], sizeof q);
        sq += q * q;
      }
      for (int l = 0; l < kLanes; ++l)
        qNorm[size_t(h * kLanes + l)] =
            std::sqrt(double(sq[l]) * normSlack + underflow(hd));
    }
    for (int l = 0; l < kLanes; ++l)
      if (alive[l] != 0)
        loadState(l);
  }

  void loadState(int l) {
    int64_t H = a.shape.numHeads, row = rows[l];
    size_t slot = size_t(a.slotOf[size_t(row)]) * size_t(H);
    bool stale = cert.stale(row);
    for (int64_t h = 0; h < H; ++h) {
      size_t at = size_t(h * kLanes + l);
      shift[at] = a.state.shift[slot + size_t(h)];
      lowL[at] = stale ? cert.lowDenom[size_t(row * H + h)]
                       : double(a.state.denom[slot + size_t(h)]);
      lowTop[at] = stale ? cert.lowTop[size_t(row * H + h)]
                         : a.state.top[slot + size_t(h)];
      outNorm[at] = INFINITY;
    }
    if (stale)
      return;
    const double *known = &cert.outNorm[size_t(row * H)];
    if (!std::isfinite(known[0])) { // its exact output, within 1.01 u
      exact::finishRow(a.shape, a.state, a.slotOf[size_t(row)], out.data());
      outputNorms(a, out.data(), norms.data());
      known = norms.data();
    }
    for (int64_t h = 0; h < H; ++h)
      outNorm[size_t(h * kLanes + l)] = known[h];
  }

  /// Adds (sign +1) or removes (-1) one term in the lanes it reaches: a lane
  /// dies when the shift could move, a score could leave the contract, or L
  /// could reach 1.
  void apply(const TermNorms &t, const bool *reaches) {
    if (t.sign > 0)
      applyTerm<true>(t, reaches);
    else
      applyTerm<false>(t, reaches);
  }

  /// The lanes run in chains of four (vectors D4): chain j = 2h + half
  /// holds lanes [4 half, 4 half + 4) of head h, at [4j] of the per-head
  /// arrays. Each stage runs over every chain before the next, so that the
  /// chains' long dependencies (the exp polynomial, the divisions) overlap.
  template <bool kAdd> void applyTerm(const TermNorms &t, const bool *reaches) {
    using simd::D4;
    using simd::I4;
    int64_t H = a.shape.numHeads, hd = a.hd, chains = 2 * H;
    int64_t perKv = H / a.shape.numKvHeads;
    double used[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      used[l] = reaches[l] ? 1.0 : 0.0;
      terms[l] += reaches[l] && alive[l] != 0;
    }
    for (int64_t h = 0; h < H; ++h) {
      const float *k = t.term->kRot.data() + (h / perKv) * hd;
      const float *qh = qT.data() + h * hd * kLanes;
      // Each lane one chain over c (in order), eight lanes per vector.
      simd::F8 score = {};
      for (int64_t c = 0; c < hd; ++c) {
        simd::F8 q;
        std::memcpy(&q, qh + c * kLanes, sizeof q);
        score += q * k[c];
      }
      for (int l = 0; l < kLanes; ++l)
        scores[size_t(h * kLanes + l)] =
            double(a.shape.scale) * double(score[l]);
    }
    double rootHd = std::sqrt(double(hd));
    D4 *x = chainX.data();
    I4 *ok = chainOk.data();
    for (int64_t j = 0; j < chains; ++j) {
      size_t at = size_t(4 * j), g = size_t(j / 2 / perKv);
      D4 s = load(&scores[at]), M = load(&shift[at]);
      D4 slack = scoreSlack * load(&qNorm[at]) * t.key[g] + scoreFloor;
      // An addition must not raise the shift; it raises top when it scores
      // above M - kShiftBucket for sure, a removal lowers it when it may.
      ok[j] = simd::absOf(s) + slack <= double(exact::kMaxScore);
      D4 topStep;
      if constexpr (kAdd) {
        ok[j] &= s + slack <= M;
        topStep = s - slack > M - kBucket ? simd::splat(1.0) : D4{};
      } else {
        topStep = s + slack > M - kBucket ? simd::splat(-1.0) : D4{};
      }
      store(&lowTop[at],
            load(&lowTop[at]) + load(&used[at % kLanes]) * topStep);
      // P <= (exp(fl(s - M)) (1 + 2^-20) + 2^-126) 2^26, fl(x) <= x (1 - u)
      // for x <= 0; the integer weight round(P) <= floor(P + 0.5).
      x[j] = simd::minOf(D4{}, s + slack - M) * (1 - kUnit);
    }
    for (int64_t j = 0; j < chains; ++j)
      x[j] = simd::expUpperBound(x[j]);
    D4 moveSq[2] = {};
    for (int64_t j = 0; j < chains; ++j) {
      size_t at = size_t(4 * j), g = size_t(j / 2 / perKv);
      double v = t.value[g], vmax = cert.valueNorm[g];
      D4 use = load(&used[at % kLanes]), L = load(&lowL[at]);
      I4 reached = use != 0.0;
      D4 P = (x[j] * kExpSlack + 0x1p-126) * kScale;
      D4 p = simd::floorOf(P + 0.5);
      D4 after = kAdd ? L : L - p;
      I4 fine = ok[j] & (after >= 1.0);
      D4 ob = outputBound(vmax, after, load(&outNorm[at]),
                          load(&drift[at % kLanes]));
      // ||a - p o|| <= p ||v - o|| + ||round(P v) - P v|| + |P - p| ||v||.
      D4 num = p * (v + ob) + simd::minOf(simd::splat(0.5 * rootHd), P * v) +
               simd::minOf(simd::splat(0.5), P) * v;
      // + the float outputs before and after the term.
      D4 move = num / after + 1.01 * kUnit * (2 * ob + num / after);
      store(&alive[at % kLanes],
            (reached & ~fine) != 0 ? D4{} : load(&alive[at % kLanes]));
      moveSq[j % 2] += reached != 0 ? move * move : D4{};
      store(&lowL[at], reached != 0 ? after : L);
    }
    for (int l = 0; l < kLanes; ++l)
      drift[l] +=
          cert.normBound * std::sqrt(moveSq[l / 4][l % 4]) * (1.0 + 1e-6);
  }

  /// A bound of ||output_h|| for a state of this edit whose denominator is
  /// at least L (docs/exactness.md, "Deferred updates", item 4): a convex
  /// combination of values, or (rows that are not stale) the output now,
  /// `known`, moved by at most the drift `charged` so far. T: double or D4.
  template <class T> T outputBound(double vmax, T L, T known, T charged) const {
    T viaValues = vmax + keyCount * 0.5 * (std::sqrt(double(a.hd)) + vmax) / L;
    T viaKnown = known + charged / cert.normBound;
    return viaKnown < viaValues ? viaKnown : viaValues; // std::min's choice
  }

  static simd::D4 load(const double *x) {
    simd::D4 v;
    std::memcpy(&v, x, sizeof v);
    return v;
  }
  static void store(double *x, simd::D4 v) { std::memcpy(x, &v, sizeof v); }

  /// Lane l's linear layer rounding at any output its row may now have.
  double rounding(int l) const {
    if (cert.linear == SIZE_MAX)
      return 0.0;
    double sq = 0;
    for (int64_t h = 0; h < a.shape.numHeads; ++h) {
      size_t at = size_t(h * kLanes + l);
      double ob = outputBound(cert.valueNorm[size_t(a.shape.kvHeadOf(h))],
                              lowL[at], outNorm[at], drift[l]);
      sq += ob * ob;
    }
    return double(cert.inWidth + 2) * kUnit * 1.01 *
           (cert.frobenius * std::sqrt(sq) + cert.biasNorm);
  }

  /// Lane l's row may defer: every check passed, some key still scores above
  /// M - kShiftBucket in every head, and the charges fit its budget.
  bool defers(int l, double budget) const {
    if (alive[l] == 0 || terms[l] == 0)
      return false;
    for (int64_t h = 0; h < a.shape.numHeads; ++h)
      if (!(lowTop[size_t(h * kLanes + l)] >= 1))
        return false;
    return drift[l] + rounding(l) <= budget;
  }
};

/// Which of the edit's added and removed terms reached a deferred row (bit t
/// of each mask: term t; at most kMaxBoundedTerms terms in all).
struct ReachMasks {
  uint32_t added = 0, removed = 0;
};
static_assert(kMaxBoundedTerms <= 32, "a bit per term in ReachMasks");

/// Gives the rows deferred by deferCandidates their pending terms, each
/// term added to the certificate's pool once: the edit's added terms, then
/// its removed ones, then the rows' own edge terms, so that every row's ids
/// stay ascending (catchUpBlock merges them).
void recordPending(const DeltaPlan &d, const std::vector<TermNorms> &added,
                   const std::vector<TermNorms> &removed,
                   const std::vector<ReachMasks> &masks, Certificate &cert) {
  ReachMasks any;
  for (size_t c = 0; c < masks.size(); ++c) {
    any.added |= masks[c].added;
    any.removed |= masks[c].removed;
  }
  std::vector<int64_t> addedIds(added.size(), -1),
      removedIds(removed.size(), -1);
  for (size_t t = 0; t < added.size(); ++t)
    if (any.added >> t & 1)
      addedIds[t] = cert.terms.add(added[t].term->kRot, added[t].term->v, +1);
  for (size_t t = 0; t < removed.size(); ++t)
    if (any.removed >> t & 1)
      removedIds[t] =
          cert.terms.add(removed[t].term->kRot, removed[t].term->v, -1);
  for (size_t c = 0; c < d.candidates.size(); ++c) {
    int64_t i = d.candidates[c];
    if (!d.deferred[size_t(i)])
      continue;
    std::vector<int64_t> &ids = cert.pending[size_t(i)];
    if (ids.capacity() == 0) // kept when the row settles or moves
      ids.reserve(kFirstPendingCapacity);
    auto push = [&](int64_t id) {
      cert.terms.retain(id);
      ids.push_back(id);
    };
    for (size_t t = 0; t < added.size(); ++t)
      if (masks[c].added >> t & 1)
        push(addedIds[t]);
    for (size_t t = 0; t < removed.size(); ++t)
      if (masks[c].removed >> t & 1)
        push(removedIds[t]);
    if (auto it = d.edgeTerms.find(i); it != d.edgeTerms.end())
      for (int sign : {+1, -1})
        for (const auto &[termSign, t] : it->second)
          if (termSign == sign)
            push(cert.terms.add(t.kRot, t.v, sign));
  }
}

} // namespace

void coverAllValues(const AttentionStep &a, Certificate &cert) {
  int64_t Hkv = a.shape.numKvHeads, hd = a.hd;
  cert.valueNorm.assign(size_t(Hkv), 0.0);
  for (int64_t j = 0; j < a.n; ++j)
    for (int64_t g = 0; g < Hkv; ++g) {
      const float *x = a.v.row(j) + g * hd;
      double norm = std::sqrt(dotDouble(x, x, hd)) * kNormSlack;
      cert.valueNorm[size_t(g)] = std::max(cert.valueNorm[size_t(g)], norm);
    }
}

void recordOutputNorms(const AttentionStep &a, Certificate &cert, int64_t row,
                       const float *out) {
  if (!cert.defer)
    return;
  double *norms = &cert.outNorm[size_t(row * a.shape.numHeads)];
  if (out)
    outputNorms(a, out, norms);
  else
    std::fill(norms, norms + a.shape.numHeads, INFINITY);
}

void deferCandidates(const AttentionStep &a, const EditPlan &plan, DeltaPlan &d,
                     Certificate &cert) {
  if (d.oldTerms.size() + d.newTerms.size() > kMaxBoundedTerms)
    return; // too many terms for any row
  std::vector<TermNorms> added, removed;
  for (const Term &t : d.newTerms) { // new values: raise the value norms
    added.push_back(normsOf(a, t, +1));
    for (size_t g = 0; g < cert.valueNorm.size(); ++g)
      cert.valueNorm[g] = std::max(cert.valueNorm[g], added.back().value[g]);
  }
  for (const Term &t : d.oldTerms)
    removed.push_back(normsOf(a, t, -1));
  int64_t H = a.shape.numHeads, count = int64_t(d.candidates.size());
  double keyCount = double(a.n + int64_t(plan.to.size()));
  d.deferred.assign(size_t(a.n), 0);
  int64_t blocks = (count + kLanes - 1) / kLanes;
  std::vector<uint64_t> termsBounded(size_t(blocks), 0);
  std::vector<ReachMasks> masks(static_cast<size_t>(count));
  int64_t chunks = (blocks + kDeferChunk - 1) / kDeferChunk;
  parallelFor(
      a.ctx.poolFor(double(count) * double(added.size() + removed.size()) *
                    double(a.qw)),
      chunks, [&](int64_t chunk) {
        BlockBound bound(a, cert, keyCount);
        std::vector<TermNorms> edge[kLanes];
        bool reaches[kLanes];
        for (int64_t b = chunk * kDeferChunk;
             b < std::min(blocks, (chunk + 1) * kDeferChunk); ++b) {
          size_t first = size_t(b * kLanes);
          bound.load(plan, d.candidates, first,
                     std::min<size_t>(kLanes, size_t(count) - first));
          size_t numTerms[kLanes] = {};
          for (int l = 0; l < kLanes; ++l) {
            edge[l].clear();
            if (!bound.valid[l])
              continue;
            if (auto it = d.edgeTerms.find(bound.rows[l]);
                it != d.edgeTerms.end())
              for (const auto &[sign, t] : it->second)
                edge[l].push_back(normsOf(a, t, sign));
            numTerms[l] = edge[l].size();
            for (const TermNorms &t : added)
              numTerms[l] += a.inWindow(t.term->position, bound.rows[l]);
            for (const TermNorms &t : removed)
              numTerms[l] += a.inWindow(t.term->position, bound.oldPos[l]);
            if (numTerms[l] > kMaxBoundedTerms)
              bound.alive[l] = 0;
          }
          ReachMasks reached[kLanes];
          auto common = [&](const TermNorms &t, size_t index, bool isAdded) {
            const int64_t *pos = isAdded ? bound.rows : bound.oldPos;
            bool any = false;
            for (int l = 0; l < kLanes; ++l) {
              reaches[l] =
                  bound.valid[l] && a.inWindow(t.term->position, pos[l]);
              any = any || reaches[l];
              (isAdded ? reached[l].added : reached[l].removed) |=
                  uint32_t(reaches[l]) << index;
            }
            if (any)
              bound.apply(t, reaches);
          };
          auto own = [&](int sign) {
            for (int l = 0; l < kLanes; ++l)
              for (const TermNorms &t : edge[l])
                if (t.sign == sign) {
                  std::fill(reaches, reaches + kLanes, false);
                  reaches[l] = true;
                  bound.apply(t, reaches);
                }
          };
          for (size_t t = 0; t < added.size(); ++t) // additions first
            common(added[t], t, true);
          own(+1);
          for (size_t t = 0; t < removed.size(); ++t)
            common(removed[t], t, false);
          own(-1);
          for (int l = 0; l < kLanes; ++l) {
            if (!bound.valid[l])
              continue;
            int64_t i = bound.rows[l];
            termsBounded[size_t(b)] += bound.terms[l];
            double &budget = cert.budget[size_t(i)];
            if (!bound.defers(l, budget))
              continue; // the exact update (a stale row catches up first)
            if (!cert.stale(i))
              cert.syncBudget[size_t(i)] = budget;
            budget -= bound.drift[l];
            for (int64_t h = 0; h < H; ++h) {
              size_t at = size_t(h * kLanes + l);
              cert.lowDenom[size_t(i * H + h)] = bound.lowL[at];
              cert.lowTop[size_t(i * H + h)] = int32_t(bound.lowTop[at]);
            }
            d.deferred[size_t(i)] = 1;
            masks[first + size_t(l)] = reached[l];
          }
        }
      });
  uint64_t bounded = 0;
  for (uint64_t t : termsBounded)
    bounded += t;
  a.ctx.stats.macs += bounded * uint64_t(a.qw);
  recordPending(d, added, removed, masks, cert);
  int64_t numDeferred = 0;
  std::vector<int64_t> kept;
  for (int64_t i : d.candidates) {
    numDeferred += d.deferred[size_t(i)];
    if (!d.deferred[size_t(i)])
      kept.push_back(i);
  }
  a.ctx.stats.deferredRows += numDeferred;
  d.candidates = std::move(kept);
}

uint64_t catchUpBlock(const AttentionStep &a, const Certificate &cert,
                      const float *qT, const int64_t *rows,
                      const int64_t *stateRows, const bool *valid, bool *ok) {
  constexpr int L = exact::kTermBlock;
  // Every lane's ids are ascending (recordPending): their union, merged
  // (sorted instead, should a list ever not be).
  std::vector<int64_t> ids, merged;
  bool ascending = true;
  for (int l = 0; l < L; ++l)
    if (valid[l] && cert.stale(rows[l])) {
      const std::vector<int64_t> &own = cert.pending[size_t(rows[l])];
      ascending = ascending && std::is_sorted(own.begin(), own.end());
      merged.clear();
      if (ascending)
        std::set_union(ids.begin(), ids.end(), own.begin(), own.end(),
                       std::back_inserter(merged));
      else
        merged = ids, merged.insert(merged.end(), own.begin(), own.end());
      ids.swap(merged);
    }
  if (!ascending) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  if (ids.empty())
    return 0;
  std::vector<exact::TermRef> refs(ids.size());
  std::unique_ptr<bool[]> use(new bool[ids.size() * L]());
  uint64_t applied = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const PendingTerms::Entry &e = cert.terms[ids[t]];
    refs[t] = {e.kRot.data(), e.v.data(), e.sign};
  }
  for (int l = 0; l < L; ++l) {
    if (!valid[l] || !cert.stale(rows[l]))
      continue;
    for (int64_t id : cert.pending[size_t(rows[l])]) {
      size_t t =
          size_t(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin());
      use[t * L + size_t(l)] = true;
      ++applied;
    }
  }
  exact::applyTermsToBlock(qT, stateRows, use.get(), refs.data(),
                           int64_t(refs.size()), a.shape, a.state, ok);
  return applied;
}

} // namespace incnn::runtime
