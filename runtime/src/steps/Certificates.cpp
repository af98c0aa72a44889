//===- Certificates.cpp - VQ margin certificates --------------------------===//
#include "Certificates.h"

#include "../CertificateChains.h"
#include "../Kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace incnn::runtime {

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
    }
}

void Certificates::remap(const std::vector<int64_t> &from) {
  size_t n = from.size();
  for (Certificate &c : list) {
    auto remapRows = [&](std::vector<double> &v) {
      std::vector<double> next(n, -INFINITY);
      for (size_t i = 0; i < n; ++i)
        if (from[i] >= 0 && size_t(from[i]) < v.size())
          next[i] = v[size_t(from[i])];
      v = std::move(next);
    };
    remapRows(c.budget);
    remapRows(c.refNorm);
    remapRows(c.syncBudget);
    std::vector<std::vector<int64_t>> pending(n);
    size_t H = size_t(c.numHeads);
    std::vector<double> lowDenom(n * H, 0.0);
    std::vector<int32_t> lowTop(n * H, 0);
    std::vector<double> outNorm(c.defer ? n * H : 0, INFINITY);
    std::vector<char> kept(c.pending.size(), 0);
    for (size_t i = 0; i < n; ++i) {
      size_t o = size_t(from[i]);
      if (from[i] < 0 || o >= c.pending.size())
        continue; // new rows are computed in full
      kept[o] = 1;
      if (c.defer && (o + 1) * H <= c.outNorm.size())
        std::copy_n(c.outNorm.begin() + int64_t(o * H), H,
                    outNorm.begin() + int64_t(i * H));
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
    c.outNorm = std::move(outNorm);
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
  int64_t K = cb.shape[1], d = c.codeWidth;
  std::vector<float> distances(size_t(c.groups) * 2);
  for (int64_t g = 0; g < c.groups; ++g)
    kernels::nearestCode(x + g * d, cb.ptr() + g * K * d, K, d,
                         &distances[size_t(2 * g)],
                         &distances[size_t(2 * g + 1)]);
  return budgetOfDistances(c, distances.data(), aNorm);
}

double Certificates::budgetOfDistances(const Certificate &c,
                                       const float *distances,
                                       double aNorm) const {
  if (!enabled_)
    return -INFINITY;
  // Codes stay the same while the VQ input moves by less than half the gap
  // between the nearest and second-nearest codeword distances of every
  // group, after allowing for float rounding: computed squared distances are
  // within a factor (1 +- eta) of the true ones (sums of non-negative terms),
  // and the linear layer's rounding moves its output by at most rho(a).
  const double u = std::ldexp(1.0, -24);
  const double eta = 2.0 * double(c.codeWidth + 2) * u * 1.01;
  double margin = INFINITY;
  for (int64_t g = 0; g < c.groups; ++g) {
    float best = distances[2 * g], second = distances[2 * g + 1];
    if (!std::isfinite(best))
      return -INFINITY; // overflowing distances certify nothing
    if (!std::isfinite(second))
      continue; // a single code never flips
    double gap = std::sqrt(double(second)) * (1.0 - eta) -
                 std::sqrt(double(best)) * (1.0 + eta);
    margin = std::min(margin, gap);
  }
  double rho =
      double(c.inWidth + 2) * u * 1.01 * (c.frobenius * aNorm + c.biasNorm);
  double budget = margin / 2.01 - rho;
  return std::isfinite(budget) ? budget : -INFINITY;
}

bool Certificates::certify(Certificate &c, int64_t row, const float *newOut,
                           const float *oldOut, int64_t width) const {
  double &budget = c.budget[size_t(row)];
  if (!std::isfinite(budget))
    return false;
  double norm = 0;
  double drift = c.normBound * moveOf(newOut, oldOut, width, norm);
  const double u = std::ldexp(1.0, -24);
  double rho = c.linear == SIZE_MAX
                   ? 0.0
                   : double(c.inWidth + 2) * u * 1.01 *
                         (c.frobenius * std::sqrt(norm) + c.biasNorm);
  if (!(drift + rho <= budget))
    return false;
  budget -= drift;
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
  // below: double sums of floats err by at most width * 2^-53).
  double diffs[8] = {}, norms[8] = {};
  int64_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256d dLo = _mm256_setzero_pd(), dHi = dLo, nLo = dLo, nHi = dLo;
  for (; k + 8 <= width; k += 8) {
    __m256 a = _mm256_loadu_ps(newOut + k), b = _mm256_loadu_ps(oldOut + k);
    __m256d aLo = _mm256_cvtps_pd(_mm256_castps256_ps128(a)),
            aHi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    __m256d eLo =
                _mm256_sub_pd(aLo, _mm256_cvtps_pd(_mm256_castps256_ps128(b))),
            eHi = _mm256_sub_pd(aHi,
                                _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
    dLo = _mm256_fmadd_pd(eLo, eLo, dLo);
    dHi = _mm256_fmadd_pd(eHi, eHi, dHi);
    nLo = _mm256_fmadd_pd(aLo, aLo, nLo);
    nHi = _mm256_fmadd_pd(aHi, aHi, nHi);
  }
  _mm256_storeu_pd(diffs, dLo);
  _mm256_storeu_pd(diffs + 4, dHi);
  _mm256_storeu_pd(norms, nLo);
  _mm256_storeu_pd(norms + 4, nHi);
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
