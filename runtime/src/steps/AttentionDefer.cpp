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
#include "AttentionStep.h"

#include <algorithm>
#include <cmath>
#include <memory>

namespace incnn::runtime {

namespace {

constexpr double kUnit = 0x1p-24;         ///< float's unit roundoff
constexpr double kTermScale = 0x1p24;     ///< P = exp(s - M) * 2^24
constexpr double kExpSlack = 1 + 0x1p-20; ///< cephesExp <= exp * this
/// Norms summed in double from floats, times this, are upper bounds.
constexpr double kNormSlack = 1 + 1e-12;
/// Rows reached by more terms than this take the exact update (a bound per
/// term and head costs about what the exact update of the term does).
constexpr size_t kMaxBoundedTerms = 32;
/// Candidate rows bounded together by one task.
constexpr int64_t kDeferChunk = 256;

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
        std::sqrt(double(dotFloat(o, o, hd)) * normSlack) * (1 + 4 * kUnit);
  }
}

/// The bound of one row: its softmax facts per head and the drift charged.
/// One per task, reset for each row.
struct RowBound {
  const AttentionStep &a;
  const Certificate &cert;
  double keyCount;      ///< keys any state of the row holds, at most
  double scoreSlack;    ///< per unit of ||q_h|| ||k_h||: the kernels' and ours
  std::vector<float> q; ///< the rotated query
  std::vector<double> qNorm;       ///< [H], upper bounds
  std::vector<double> shift, lowL; ///< [H]
  std::vector<int32_t> lowTop;     ///< [H]
  /// [H], rows that are not stale: ||output_h|| now, an upper bound (stale
  /// rows: infinite, the value norms bound them).
  std::vector<double> outNorm;
  std::vector<float> out; ///< scratch
  double drift = 0;       ///< of the VQ input, summed over terms

  RowBound(const AttentionStep &a, const Certificate &cert, double keyCount)
      : a(a), cert(cert), keyCount(keyCount) {
    size_t H = size_t(a.shape.numHeads);
    // The kernels' score is an FMA chain of hd products times the scale;
    // ours is dotFloat's.
    scoreSlack =
        double(2 * a.hd + 5) * kUnit * 1.01 * std::fabs(double(a.shape.scale));
    q.resize(size_t(a.qw));
    qNorm.resize(H);
    shift.resize(H);
    lowL.resize(H);
    lowTop.resize(H);
    outNorm.resize(H);
    out.resize(size_t(a.qw));
  }

  void reset(int64_t row) {
    int64_t H = a.shape.numHeads, hd = a.hd;
    std::copy(a.q.row(row), a.q.row(row) + a.qw, q.begin());
    exact::rotateRow(q.data(), H, hd, a.shape.ropeTheta, row);
    size_t slot = size_t(a.slotOf[size_t(row)]) * size_t(H);
    bool stale = cert.stale(row);
    double normSlack = 1 + 2 * double(hd + 2) * kUnit * 1.01;
    for (int64_t h = 0; h < H; ++h) {
      const float *qh = &q[size_t(h * hd)];
      qNorm[size_t(h)] = std::sqrt(double(dotFloat(qh, qh, hd)) * normSlack);
      shift[size_t(h)] = a.state.shift[slot + size_t(h)];
      lowL[size_t(h)] = stale ? cert.lowDenom[size_t(row * H + h)]
                              : double(a.state.denom[slot + size_t(h)]);
      lowTop[size_t(h)] = stale ? cert.lowTop[size_t(row * H + h)]
                                : a.state.top[slot + size_t(h)];
      outNorm[size_t(h)] = INFINITY;
    }
    if (!stale) { // the output its exact state gives, within 1.01 u
      const double *known = &cert.outNorm[size_t(row * H)];
      if (std::isfinite(known[0])) {
        std::copy(known, known + H, outNorm.begin());
      } else {
        exact::finishRow(a.shape, a.state, a.slotOf[size_t(row)], out.data());
        outputNorms(a, out.data(), outNorm.data());
      }
    }
    drift = 0;
  }

  /// A bound of ||output_h|| for a state of this edit whose denominator is
  /// at least L: the output is a convex combination of values, off by at
  /// most (0.5 sqrt(hd) + 0.5 ||v||) / L per key from the rounded terms; or,
  /// for a row that is not stale, its output now moved by at most the drift
  /// charged so far.
  double outputBound(int64_t h, double L) const {
    double vmax = cert.valueNorm[size_t(a.shape.kvHeadOf(h))];
    return std::min(vmax +
                        keyCount * 0.5 * (std::sqrt(double(a.hd)) + vmax) / L,
                    outNorm[size_t(h)] + drift / cert.normBound);
  }

  /// Adds (sign +1) or removes (-1) one term: false when the shift could
  /// move, a score could leave the contract, or L could reach 0.
  bool apply(const TermNorms &t) {
    int64_t H = a.shape.numHeads, hd = a.hd;
    bool add = t.sign > 0;
    double moveSq = 0;
    double rootHd = std::sqrt(double(hd));
    for (int64_t h = 0; h < H; ++h) {
      int64_t g = a.shape.kvHeadOf(h);
      double M = shift[size_t(h)];
      double s = double(a.shape.scale) *
                 double(dotFloat(&q[size_t(h * hd)],
                                 t.term->kRot.data() + g * hd, hd));
      double slack = scoreSlack * qNorm[size_t(h)] * t.key[size_t(g)] + 1e-300;
      if (!(std::fabs(s) + slack <= double(exact::kMaxScore)))
        return false;
      if (add) {
        if (!(s + slack <= M))
          return false; // the shift could rise
        if (s - slack > M - 1)
          ++lowTop[size_t(h)];
      } else if (s + slack > M - 1) {
        --lowTop[size_t(h)];
      }
      // P <= (exp(fl(s - M)) (1 + 2^-20) + 2^-126) 2^24, fl(x) <= x (1 - u)
      // for x <= 0; the integer weight round(P) <= floor(P + 0.5).
      double x = std::min(0.0, s + slack - M) * (1 - kUnit);
      double P = (std::exp(x) * kExpSlack + 0x1p-126) * kTermScale;
      double p = std::floor(P + 0.5);
      double L = lowL[size_t(h)], v = t.value[size_t(g)];
      double after = add ? L : L - p;
      if (!(after >= 1.0))
        return false;
      double ob = outputBound(h, after); // before the term (and after)
      // ||a - p o|| <= p ||v - o|| + ||round(P v) - P v|| + |P - p| ||v||.
      double num =
          p * (v + ob) + std::min(0.5 * rootHd, P * v) + std::min(0.5, P) * v;
      // + the float outputs before and after the term.
      double move = num / after + 1.01 * kUnit * (2 * ob + num / after);
      moveSq += move * move;
      lowL[size_t(h)] = after;
    }
    drift += cert.normBound * std::sqrt(moveSq) * (1.0 + 1e-6);
    return true;
  }

  /// The linear layer's rounding at any output the row may now have.
  double rounding() const {
    if (cert.linear == SIZE_MAX)
      return 0.0;
    double sq = 0;
    for (int64_t h = 0; h < a.shape.numHeads; ++h) {
      double ob = outputBound(h, lowL[size_t(h)]);
      sq += ob * ob;
    }
    return double(cert.inWidth + 2) * kUnit * 1.01 *
           (cert.frobenius * std::sqrt(sq) + cert.biasNorm);
  }

  bool shiftHeld() const {
    return std::all_of(lowTop.begin(), lowTop.end(),
                       [](int32_t t) { return t >= 1; });
  }
};

/// The terms that reach candidate row i (old row o): additions first.
void termsOfRow(const AttentionStep &a, const DeltaPlan &d,
                const std::vector<TermNorms> &added,
                const std::vector<TermNorms> &removed, int64_t i, int64_t o,
                std::vector<const TermNorms *> &out,
                std::vector<TermNorms> &edge) {
  out.clear();
  edge.clear();
  auto it = d.edgeTerms.find(i);
  if (it != d.edgeTerms.end())
    for (const auto &[sign, t] : it->second)
      edge.push_back(normsOf(a, t, sign));
  for (const TermNorms &t : added)
    if (a.inWindow(t.term->position, i))
      out.push_back(&t);
  for (const TermNorms &t : edge)
    if (t.sign > 0)
      out.push_back(&t);
  for (const TermNorms &t : removed)
    if (a.inWindow(t.term->position, o))
      out.push_back(&t);
  for (const TermNorms &t : edge)
    if (t.sign < 0)
      out.push_back(&t);
}

/// Gives the rows deferred by deferCandidates their pending terms: the
/// terms that reached each, added to the certificate's pool once.
void recordPending(const AttentionStep &a, const EditPlan &plan,
                   const DeltaPlan &d, const std::vector<TermNorms> &added,
                   const std::vector<TermNorms> &removed, Certificate &cert) {
  std::vector<int64_t> idOfAdded(added.size(), -1),
      idOfRemoved(removed.size(), -1);
  auto idOf = [&](const TermNorms *t) {
    if (t >= added.data() && t < added.data() + added.size()) {
      int64_t &id = idOfAdded[size_t(t - added.data())];
      if (id < 0)
        id = cert.terms.add(t->term->kRot, t->term->v, +1);
      return id;
    }
    if (t >= removed.data() && t < removed.data() + removed.size()) {
      int64_t &id = idOfRemoved[size_t(t - removed.data())];
      if (id < 0)
        id = cert.terms.add(t->term->kRot, t->term->v, -1);
      return id;
    }
    return cert.terms.add(t->term->kRot, t->term->v, t->sign); // an edge term
  };
  std::vector<const TermNorms *> terms;
  std::vector<TermNorms> edge;
  for (int64_t i : d.candidates) {
    if (!d.deferred[size_t(i)])
      continue;
    termsOfRow(a, d, added, removed, i, plan.from[size_t(i)], terms, edge);
    std::vector<int64_t> &ids = cert.pending[size_t(i)];
    for (const TermNorms *t : terms) {
      int64_t id = idOf(t);
      cert.terms.retain(id);
      ids.push_back(id);
    }
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
  std::vector<uint64_t> termsBounded(size_t(count), 0);
  int64_t chunks = (count + kDeferChunk - 1) / kDeferChunk;
  parallelFor(
      a.ctx.poolFor(double(count) * double(added.size() + removed.size()) *
                    double(a.qw)),
      chunks, [&](int64_t chunk) {
        std::vector<const TermNorms *> terms;
        std::vector<TermNorms> edge;
        RowBound bound(a, cert, keyCount);
        for (int64_t c = chunk * kDeferChunk;
             c < std::min(count, (chunk + 1) * kDeferChunk); ++c) {
          int64_t i = d.candidates[size_t(c)];
          double &budget = cert.budget[size_t(i)];
          if (!std::isfinite(budget))
            continue;
          termsOfRow(a, d, added, removed, i, plan.from[size_t(i)], terms,
                     edge);
          if (terms.size() > kMaxBoundedTerms)
            continue;
          termsBounded[size_t(c)] = terms.size();
          bound.reset(i);
          bool deferred =
              std::all_of(terms.begin(), terms.end(), [&](const TermNorms *t) {
                return bound.apply(*t) && bound.drift <= budget;
              });
          if (!deferred || !bound.shiftHeld() ||
              !(bound.drift + bound.rounding() <= budget))
            continue; // the exact update (a stale row catches up first)
          if (!cert.stale(i))
            cert.syncBudget[size_t(i)] = budget;
          budget -= bound.drift;
          std::copy(bound.lowL.begin(), bound.lowL.end(),
                    cert.lowDenom.begin() + i * H);
          std::copy(bound.lowTop.begin(), bound.lowTop.end(),
                    cert.lowTop.begin() + i * H);
          d.deferred[size_t(i)] = 1;
        }
      });
  uint64_t bounded = 0;
  for (uint64_t t : termsBounded)
    bounded += t;
  a.ctx.stats.macs += bounded * uint64_t(a.qw);
  recordPending(a, plan, d, added, removed, cert);
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
  std::vector<int64_t> ids;
  for (int l = 0; l < L; ++l)
    if (valid[l] && cert.stale(rows[l])) {
      const std::vector<int64_t> &own = cert.pending[size_t(rows[l])];
      ids.insert(ids.end(), own.begin(), own.end());
    }
  if (ids.empty())
    return 0;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
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
