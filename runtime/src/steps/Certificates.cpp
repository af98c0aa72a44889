//===- Certificates.cpp - VQ margin certificates --------------------------===//
#include "Certificates.h"

#include "../CertificateChains.h"
#include "../Kernels.h"
#include "../attention/ExactKernels.h"

#include <algorithm>
#include <cmath>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace incnn::runtime {

namespace {

constexpr double kUnit53 = 0x1p-53; ///< double's unit roundoff
constexpr double kUnit24 = 0x1p-24; ///< float's

/// The relative error of a float squared distance over d-wide codes (sums of
/// non-negative terms), with room.
double etaOf(const Certificate &c) {
  return 2.0 * double(c.codeWidth + 2) * 0x1p-24 * 1.01;
}

/// n u / (1 - n u): the relative error of n operations with unit roundoff
/// u (double's by default).
double gamma(int64_t n, double u = kUnit53) {
  double x = double(n) * u;
  return x / (1.0 - x);
}

double normOf(const double *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    s += x[i] * x[i];
  return std::sqrt(s) * (1.0 + 1e-12);
}

/// The directions W_g^T c_{g,k} of a chain's codes and the error bounds of
/// the scores computed along them (docs/exactness.md, "Directional
/// certificates").
void buildDirections(const Program &program, Certificate &c) {
  const Weight &w =
      program.weights[size_t(program.instrs[c.linear].weights[0])];
  const Weight &cb = program.weights[size_t(program.instrs[c.vq].weights[0])];
  int64_t G = c.groups, K = c.codes, d = c.codeWidth, m = c.inWidth;
  const float *wp = w.ptr(), *codes = cb.ptr();
  c.along.assign(size_t(G * K * m), 0.0f);
  c.alongErr.resize(size_t(G * K));
  c.alongSum.resize(size_t(G * K));
  c.codeGap.resize(size_t(G * K * K));
  std::vector<double> code(static_cast<size_t>(d)),
      sums(static_cast<size_t>(m));
  for (int64_t gk = 0; gk < G * K; ++gk) {
    int64_t g = gk / K;
    double *a = sums.data();
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int64_t r = 0; r < d; ++r) {
      double cr = codes[gk * d + r]; // float x float is exact in double
      code[size_t(r)] = cr;
      const float *wr = wp + (g * d + r) * m;
      for (int64_t i = 0; i < m; ++i)
        a[i] += cr * double(wr[i]);
    }
    bool finite = true;
    for (int64_t i = 0; i < m; ++i) {
      c.along[size_t(gk * m + i)] = float(a[i]);
      finite = finite && std::isfinite(c.along[size_t(gk * m + i)]);
    }
    double alongNorm = normOf(a, m), codeNorm = normOf(code.data(), d);
    if (!finite) // past float's range: this direction never certifies
      alongNorm = INFINITY;
    // |computed z_k - (W^T c_k) . Δo| per unit ||Δo||: the d-term sums of
    // `along` in double, its rounding to float (relative, or 2^-150 below
    // float's normal range), Δo's subtraction in float, then the m-term
    // float dot product.
    c.alongErr[size_t(gk)] =
        1.01 *
        (gamma(d) * codeNorm * c.frobenius * 1.01 +
         (gamma(m, kUnit24) + 2 * kUnit24) * alongNorm + double(m) * 0x1p-150);
    // Summing E edits' z_k: at most E * 2^-53 * sum |z| more.
    c.alongSum[size_t(gk)] = 1.02 * kUnit53 * alongNorm;
  }
  // Underflow: each of the dot product's m products and m sums may lose up
  // to 2^-150 (2m, whether or not they fuse), and one more for the sum.
  c.alongFloor = 1.01 * double(2 * m + 1) * 0x1p-150;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < K; ++j) {
        double s = 0;
        for (int64_t r = 0; r < d; ++r) {
          double x = double(codes[(g * K + k) * d + r]) -
                     double(codes[(g * K + j) * d + r]);
          s += x * x;
        }
        c.codeGap[size_t((g * K + k) * K + j)] = std::sqrt(s) * (1.0 + 1e-12);
      }
}

} // namespace

void Certificates::build(const Program &program, bool enabled) {
  enabled_ = enabled;
  list.clear();
  size_t n = program.instrs.size();
  byAttention.assign(n, -1);
  byLinear.assign(n, -1);
  byVQ.assign(n, -1);
  for (const CertificateChain &chain : program.certificateChains) {
    Certificate c;
    c.attention = size_t(chain.attention);
    c.vq = size_t(chain.vq);
    c.defer = chain.defer;
    c.numHeads = program.instrs[c.attention].attrs.numHeads;
    const Weight &codebook =
        program.weights[size_t(program.instrs[c.vq].weights[0])];
    c.groups = codebook.shape[0];
    c.codes = codebook.shape[1];
    c.codeWidth = codebook.shape[2];
    if (chain.linear >= 0) {
      c.linear = size_t(chain.linear);
      const Instr &lin = program.instrs[c.linear];
      LinearNorms norms = linearNorms(program, lin);
      c.frobenius = norms.frobenius;
      c.biasNorm = norms.biasNorm;
      c.normBound = chainNormBound(program, chain, norms);
      c.inWidth = program.weights[size_t(lin.weights[0])].shape[1];
    }
    c.directional = enabled && !c.defer && c.linear != SIZE_MAX;
    if (c.directional)
      buildDirections(program, c);
    int32_t index = int32_t(list.size());
    byAttention[c.attention] = index;
    byVQ[c.vq] = index;
    if (c.linear != SIZE_MAX)
      byLinear[c.linear] = index;
    list.push_back(std::move(c));
  }
}

Certificate *Certificates::ofAttention(size_t instr) {
  return byAttention[instr] < 0 ? nullptr : &list[size_t(byAttention[instr])];
}
Certificate *Certificates::ofLinear(size_t instr) {
  return byLinear[instr] < 0 ? nullptr : &list[size_t(byLinear[instr])];
}
Certificate *Certificates::ofVQ(size_t instr) {
  return byVQ[instr] < 0 ? nullptr : &list[size_t(byVQ[instr])];
}

void Certificates::prepare(int64_t n, bool fromScratch) {
  for (Certificate &c : list)
    if (fromScratch || c.budget.size() != size_t(n)) {
      c.budget.assign(size_t(n), -INFINITY);
      c.refNorm.assign(size_t(n), 0.0);
      c.syncBudget.assign(size_t(n), -INFINITY);
      c.pending.assign(size_t(n), {});
      c.terms.clear();
      c.lowDenom.assign(size_t(n * c.numHeads), 0.0);
      c.lowTop.assign(size_t(n * c.numHeads), 0);
      c.outNorm.assign(c.defer ? size_t(n * c.numHeads) : 0, INFINITY);
      size_t codesPerRow = c.directional ? size_t(c.groups * c.codes) : 0;
      c.refDist.assign(size_t(n) * codesPerRow, 0.0f);
      c.refCode.assign(c.directional ? size_t(n * c.groups) : 0, 0);
      c.alongMove.assign(size_t(n) * codesPerRow, 0.0);
      c.normMoved.assign(c.directional ? size_t(n) : 0, 0.0);
      c.alongMoved.assign(c.directional ? size_t(n) : 0, 0.0);
      c.alongEdits.assign(c.directional ? size_t(n) : 0, -1);
    }
}

void Certificates::remap(const std::vector<int64_t> &from) {
  size_t n = from.size();
  std::vector<double> next; // the last array's old buffer serves the next
  // v's row blocks of `width` moved to their new rows (runs of consecutive
  // kept rows copied at once); new rows get `fill`.
  auto remapRows = [&](std::vector<double> &v, size_t width, double fill) {
    next.resize(n * width);
    size_t oldRows = v.size() / width;
    for (size_t i = 0; i < n;) {
      size_t o = size_t(from[i]), end = i + 1;
      if (from[i] < 0 || o >= oldRows) {
        std::fill_n(next.begin() + int64_t(i * width), width, fill);
        i = end;
        continue;
      }
      while (end < n && from[end] == from[end - 1] + 1 &&
             size_t(from[end]) < oldRows)
        ++end;
      std::copy_n(v.begin() + int64_t(o * width), (end - i) * width,
                  next.begin() + int64_t(i * width));
      i = end;
    }
    v.swap(next);
  };
  for (Certificate &c : list) {
    remapRows(c.budget, 1, -INFINITY);
    remapRows(c.refNorm, 1, -INFINITY);
    remapRows(c.syncBudget, 1, -INFINITY);
    size_t H = size_t(c.numHeads);
    if (c.defer)
      remapRows(c.outNorm, H, INFINITY);
    if (std::all_of(
            c.pending.begin(), c.pending.end(),
            [](const std::vector<int64_t> &ids) { return ids.empty(); })) {
      // No stale row (always, without deferral): nothing else moves.
      c.pending.resize(n);
      c.lowDenom.resize(n * H);
      c.lowTop.resize(n * H);
      continue;
    }
    std::vector<std::vector<int64_t>> pending(n);
    std::vector<double> lowDenom(n * H, 0.0);
    std::vector<int32_t> lowTop(n * H, 0);
    std::vector<char> kept(c.pending.size(), 0);
    for (size_t i = 0; i < n; ++i) {
      size_t o = size_t(from[i]);
      if (from[i] < 0 || o >= c.pending.size())
        continue; // new rows are computed in full
      kept[o] = 1;
      pending[i] = std::move(c.pending[o]); // empty ones keep their room
      if (pending[i].empty())
        continue;
      std::copy_n(c.lowDenom.begin() + int64_t(o * H), H,
                  lowDenom.begin() + int64_t(i * H));
      std::copy_n(c.lowTop.begin() + int64_t(o * H), H,
                  lowTop.begin() + int64_t(i * H));
    }
    for (size_t o = 0; o < c.pending.size(); ++o)
      if (!kept[o]) // a deleted row
        for (int64_t id : c.pending[o])
          c.terms.release(id);
    c.pending = std::move(pending);
    c.lowDenom = std::move(lowDenom);
    c.lowTop = std::move(lowTop);
  }
}

void Certificates::growSlots(int64_t capacity) {
  for (Certificate &c : list) {
    if (!c.directional || int64_t(c.alongEdits.size()) >= capacity)
      continue;
    size_t n = size_t(capacity), codesPerRow = size_t(c.groups * c.codes);
    c.refDist.resize(n * codesPerRow, 0.0f);
    c.refCode.resize(n * size_t(c.groups), 0);
    c.alongMove.resize(n * codesPerRow, 0.0);
    c.normMoved.resize(n, 0.0);
    c.alongMoved.resize(n, 0.0);
    c.alongEdits.resize(n, -1);
  }
}

int64_t PendingTerms::add(const std::vector<float> &kRot,
                          const std::vector<double> &v, int sign) {
  entries.push_back(Entry{kRot, v, sign, 0});
  return base + int64_t(entries.size()) - 1;
}

void PendingTerms::release(int64_t id) {
  Entry &e = entries[size_t(id - base)];
  if (--e.refs > 0)
    return;
  e.kRot = {};
  e.v = {};
  while (!entries.empty() && entries.front().refs <= 0) {
    entries.pop_front();
    ++base;
  }
}

void PendingTerms::clear() {
  base += int64_t(entries.size());
  entries.clear();
}

void Certificate::settle(int64_t row) {
  for (int64_t id : pending[size_t(row)])
    terms.release(id);
  pending[size_t(row)].clear();
}

void Certificate::settleAll() {
  for (std::vector<int64_t> &ids : pending)
    ids.clear();
  terms.clear();
}

double Certificates::rowBudget(const Program &program, const Certificate &c,
                               const float *x, double aNorm) const {
  if (!enabled_)
    return -INFINITY;
  const Weight &cb = program.weights[size_t(program.instrs[c.vq].weights[0])];
  int64_t K = c.codes, d = c.codeWidth;
  std::vector<float> distances(size_t(c.groups * K)), codes(size_t(c.groups));
  for (int64_t g = 0; g < c.groups; ++g)
    codes[size_t(g)] = float(
        kernels::nearestCode(x + g * d, cb.ptr() + g * K * d, K, d, nullptr,
                             nullptr, &distances[size_t(g * K)]));
  return budgetOfDistances(c, distances.data(), codes.data(), aNorm);
}

double Certificates::rhoOf(const Certificate &c, double aNorm) {
  if (c.linear == SIZE_MAX)
    return 0.0;
  return double(c.inWidth + 2) * 0x1p-24 * 1.01 *
         (c.frobenius * aNorm + c.biasNorm);
}

double Certificates::budgetOfDistances(const Certificate &c,
                                       const float *distances,
                                       const float *codes, double aNorm) const {
  if (!enabled_)
    return -INFINITY;
  // Codes stay the same while the VQ input moves by less than half the gap
  // between the nearest and second-nearest codeword distances of every
  // group, after allowing for float rounding: computed squared distances are
  // within a factor (1 +- eta) of the true ones (sums of non-negative terms),
  // and the linear layer's rounding moves its output by at most rho(a).
  const double eta = etaOf(c);
  double margin = INFINITY;
  for (int64_t g = 0; g < c.groups; ++g) {
    const float *dist = distances + g * c.codes;
    int64_t j = int64_t(codes[g]);
    float best = dist[j], second = INFINITY;
    for (int64_t k = 0; k < c.codes; ++k)
      if (k != j)
        second = std::min(second, dist[k]);
    if (!std::isfinite(best))
      return -INFINITY; // overflowing distances certify nothing
    if (!std::isfinite(second))
      continue; // a single code never flips
    double gap = std::sqrt(double(second)) * (1.0 - eta) -
                 std::sqrt(double(best)) * (1.0 + eta);
    margin = std::min(margin, gap);
  }
  double budget = margin / 2.01 - rhoOf(c, aNorm);
  return std::isfinite(budget) ? budget : -INFINITY;
}

void Certificates::setReference(Certificate &c, int64_t row, int64_t slot,
                                const float *distances, const float *codes,
                                double aNorm) const {
  c.budget[size_t(row)] = budgetOfDistances(c, distances, codes, aNorm);
  if (!c.directional)
    return;
  size_t codesPerRow = size_t(c.groups * c.codes);
  bool finite = enabled_;
  for (size_t k = 0; k < codesPerRow; ++k)
    finite = finite && std::isfinite(distances[k]);
  std::copy_n(distances, codesPerRow,
              c.refDist.begin() + int64_t(size_t(slot) * codesPerRow));
  for (int64_t g = 0; g < c.groups; ++g)
    c.refCode[size_t(slot * c.groups + g)] = int32_t(codes[g]);
  std::fill_n(c.alongMove.begin() + int64_t(size_t(slot) * codesPerRow),
              codesPerRow, 0.0);
  c.normMoved[size_t(slot)] = 0.0;
  c.alongMoved[size_t(slot)] = 0.0;
  c.alongEdits[size_t(slot)] = finite ? 0 : -1;
}

bool Certificates::certify(Certificate &c, int64_t row, int64_t slot,
                           const float *newOut, const float *oldOut,
                           int64_t width) const {
  CertifyRow one{row, slot, newOut, oldOut};
  bool certified = false;
  certifyRows(c, &one, 1, width, &certified);
  return certified;
}

void Certificates::certifyRows(Certificate &c, const CertifyRow *rows,
                               int64_t count, int64_t width,
                               bool *certified) const {
  // Norm budgets first; the rows they cannot certify share one pass over
  // the code directions.
  int64_t m = c.inWidth, codesPerRow = c.groups * c.codes, numAlong = 0;
  static_assert(kMaxCertifyRows <= exact::detail::kMaxDotVectors, "");
  double moves[kMaxCertifyRows], rhos[kMaxCertifyRows];
  int64_t along[kMaxCertifyRows];
  static thread_local std::vector<double> z;
  static thread_local std::vector<float> deltas;
  deltas.resize(size_t(kMaxCertifyRows * m));
  const float *x[kMaxCertifyRows];
  for (int64_t i = 0; i < count; ++i) {
    const CertifyRow &r = rows[i];
    certified[i] = false;
    if (!c.certifiable(r.row, r.slot))
      continue;
    double &budget = c.budget[size_t(r.row)];
    double norm = 0;
    double move = moveOf(r.newOut, r.oldOut, width, norm);
    double drift = c.normBound * move;
    double rho = rhoOf(c, std::sqrt(norm));
    if (std::isfinite(budget) && drift + rho <= budget) {
      budget -= drift;
      if (c.directional)
        c.normMoved[size_t(r.slot)] += move;
      certified[i] = true;
      continue;
    }
    // The norm budget cannot absorb this move: its direction may. A row so
    // certified gets the norm budget its margins there leave (or none).
    budget = -INFINITY;
    if (!c.directional || size_t(r.slot) >= c.alongEdits.size() ||
        c.alongEdits[size_t(r.slot)] < 0)
      continue; // no reference
    float *delta = &deltas[size_t(numAlong * m)];
    for (int64_t k = 0; k < m; ++k)
      delta[k] = r.newOut[k] - r.oldOut[k];
    x[numAlong] = delta;
    moves[numAlong] = move;
    rhos[numAlong] = rho;
    along[numAlong++] = i;
  }
  if (numAlong == 0)
    return;
  // z = along . Δo (any summation order: the error bound covers it).
  z.resize(size_t(numAlong * codesPerRow));
  exact::detail::kernels().dotRows(c.along.data(), codesPerRow, m, x, numAlong,
                                   z.data());
  for (int64_t t = 0; t < numAlong; ++t) {
    const CertifyRow &r = rows[along[t]];
    double reach = 0;
    if (!certifyAlong(c, r.row, r.slot, moves[t], rhos[t],
                      &z[size_t(t * codesPerRow)], reach))
      continue;
    certified[along[t]] = true;
    if (reach * (1.0 - 1e-6) - rhos[t] > 0)
      c.budget[size_t(r.row)] = reach * (1.0 - 1e-6) - rhos[t];
  }
}

bool Certificates::certifyAlong(Certificate &c, int64_t row, int64_t slot,
                                double move, double rhoNew, const double *z,
                                double &room) {
  int64_t G = c.groups, K = c.codes;
  // With the reference's true squared distances t_k (t_k(1 -+ eta) brackets
  // the VQ's d_k) and the exact move Δ of the VQ input since then:
  //   t'_k - t'_j = t_k - t_j - 2 (c_k - c_j) . Δ,
  // where (c_k - c_j) . Δ is the sum of the z's of the moves certified by
  // direction, at most ||c_k - c_j|| ||W||_2 times the others, plus the
  // linear layer's rounding at both ends. The VQ keeps j when t'_k - t'_j >
  // eta (t'_k + t'_j) for every k != j.
  const double eta = etaOf(c);
  room = INFINITY;
  double moved = c.alongMoved[size_t(slot)] + move;
  int32_t &edits = c.alongEdits[size_t(slot)], count = edits + 1;
  double normPart = c.normBound * c.normMoved[size_t(slot)];
  double rounding = rhoNew + rhoOf(c, c.refNorm[size_t(row)]);
  double reach = c.normBound * (c.normMoved[size_t(slot)] + moved) + rounding;
  size_t codesPerRow = size_t(G * K);
  double *sums = &c.alongMove[size_t(slot) * codesPerRow];
  const float *dist = &c.refDist[size_t(slot) * codesPerRow];
  auto errorOf = [&](int64_t gk) {
    return (c.alongErr[size_t(gk)] + c.alongSum[size_t(gk)] * count) * moved +
           c.alongFloor * count;
  };
  for (int64_t g = 0; g < G; ++g) {
    int64_t j = c.refCode[size_t(slot * G + g)], gj = g * K + j;
    double zj = sums[gj] + z[gj], errJ = errorOf(gj);
    double reachJ = std::sqrt(double(dist[gj]) / (1.0 - eta)) + reach;
    double lowJ = double(dist[gj]) / (1.0 - eta);
    for (int64_t k = 0; k < K; ++k) {
      if (k == j)
        continue;
      int64_t gk = g * K + k;
      double zk = sums[gk] + z[gk];
      if (!std::isfinite(zk - zj))
        return false;
      double gap = double(dist[gk]) / (1.0 + eta) - lowJ - 2.0 * (zk - zj) -
                   2.0 * (errorOf(gk) + errJ) -
                   2.0 * c.codeGap[size_t(gk * K + j)] * (normPart + rounding);
      double reachK = std::sqrt(double(dist[gk]) / (1.0 - eta)) + reach;
      double need = eta * (reachK * reachK + reachJ * reachJ);
      // The check's own double arithmetic, generously.
      double slack = 1e-9 * (double(dist[gk]) + double(dist[gj]) +
                             2.0 * (std::fabs(zk) + std::fabs(zj)) + need);
      if (!(gap - need > slack))
        return false;
      // How far the VQ input may move on from here, in any direction: with
      // b = ||c_k - c_j|| + eta (reach_k + reach_j), the margin left s
      // covers a move P while 2 eta P^2 + 2 b P <= s.
      double b = c.codeGap[size_t(gk * K + j)] + eta * (reachK + reachJ),
             left = gap - need - slack;
      room = std::min(room, left / (b + std::sqrt(b * b + 2.0 * eta * left)));
    }
  }
  for (size_t gk = 0; gk < codesPerRow; ++gk)
    sums[gk] += z[gk];
  c.alongMoved[size_t(slot)] = moved;
  edits = count;
  return true;
}

void Certificates::refresh(Certificate &c, int64_t row, const float *out,
                           const float *syncOut, int64_t width) const {
  double norm = 0;
  double left = c.syncBudget[size_t(row)] -
                c.normBound * moveOf(out, syncOut, width, norm);
  double &budget = c.budget[size_t(row)];
  if (std::isfinite(left) && left > budget)
    budget = left;
}

double Certificates::moveOf(const float *newOut, const float *oldOut,
                            int64_t width, double &normSq) {
  // Eight partial sums (the order does not matter against the 1e-6 slack
  // below: double sums of floats err by at most width * 2^-53), each summed
  // in two interleaved chains so that the FMA latency is covered.
  double diffs[8] = {}, norms[8] = {};
  int64_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256d d[4], n[4];
  for (int i = 0; i < 4; ++i)
    d[i] = n[i] = _mm256_setzero_pd();
  auto add = [&](int64_t at, int chain) {
    __m256 a = _mm256_loadu_ps(newOut + at), b = _mm256_loadu_ps(oldOut + at);
    __m256d aLo = _mm256_cvtps_pd(_mm256_castps256_ps128(a)),
            aHi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    __m256d eLo =
                _mm256_sub_pd(aLo, _mm256_cvtps_pd(_mm256_castps256_ps128(b))),
            eHi = _mm256_sub_pd(aHi,
                                _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
    d[chain] = _mm256_fmadd_pd(eLo, eLo, d[chain]);
    d[chain + 1] = _mm256_fmadd_pd(eHi, eHi, d[chain + 1]);
    n[chain] = _mm256_fmadd_pd(aLo, aLo, n[chain]);
    n[chain + 1] = _mm256_fmadd_pd(aHi, aHi, n[chain + 1]);
  };
  for (; k + 16 <= width; k += 16) {
    add(k, 0);
    add(k + 8, 2);
  }
  for (; k + 8 <= width; k += 8)
    add(k, 0);
  _mm256_storeu_pd(diffs, _mm256_add_pd(d[0], d[2]));
  _mm256_storeu_pd(diffs + 4, _mm256_add_pd(d[1], d[3]));
  _mm256_storeu_pd(norms, _mm256_add_pd(n[0], n[2]));
  _mm256_storeu_pd(norms + 4, _mm256_add_pd(n[1], n[3]));
#endif
  for (; k + 8 <= width; k += 8)
    for (int l = 0; l < 8; ++l) {
      double a = newOut[k + l], b = oldOut[k + l];
      diffs[l] += (a - b) * (a - b);
      norms[l] += a * a;
    }
  for (; k < width; ++k) {
    double a = newOut[k], b = oldOut[k];
    diffs[0] += (a - b) * (a - b);
    norms[0] += a * a;
  }
  double diff = 0;
  normSq = 0;
  for (int l = 0; l < 8; ++l) {
    diff += diffs[l];
    normSq += norms[l];
  }
  return std::sqrt(diff) * (1.0 + 1e-6);
}

} // namespace incnn::runtime
