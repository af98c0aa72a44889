//===- Certificates.cpp - VQ margin certificates --------------------------===//
#include "Certificates.h"

#include "../CertificateChains.h"
#include "../Kernels.h"

#include <algorithm>
#include <cmath>

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
  }
}

double Certificates::rowBudget(const Program &program, const Certificate &c,
                               const float *x, double aNorm) const {
  if (!enabled_)
    return -INFINITY;
  // Codes stay the same while the VQ input moves by less than half the gap
  // between the nearest and second-nearest codeword distances of every
  // group, after allowing for float rounding: computed squared distances are
  // within a factor (1 +- eta) of the true ones (sums of non-negative terms),
  // and the linear layer's rounding moves its output by at most rho(a).
  const Instr &vq = program.instrs[c.vq];
  const Weight &cb = program.weights[size_t(vq.weights[0])];
  int64_t G = cb.shape[0], K = cb.shape[1], d = cb.shape[2];
  const double u = std::ldexp(1.0, -24);
  const double eta = 2.0 * double(d + 2) * u * 1.01;
  double margin = INFINITY;
  for (int64_t g = 0; g < G; ++g) {
    float best = 0, second = 0;
    kernels::nearestCode(x + g * d, cb.ptr() + g * K * d, K, d, &best, &second);
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
  double diff = 0, norm = 0;
  for (int64_t k = 0; k < width; ++k) {
    double a = newOut[k], b = oldOut[k];
    diff += (a - b) * (a - b);
    norm += a * a;
  }
  const double u = std::ldexp(1.0, -24);
  double drift = c.normBound * std::sqrt(diff) * (1.0 + 1e-6);
  double rho = c.linear == SIZE_MAX
                   ? 0.0
                   : double(c.inWidth + 2) * u * 1.01 *
                         (c.frobenius * std::sqrt(norm) + c.biasNorm);
  if (!(drift + rho <= budget))
    return false;
  budget -= drift;
  return true;
}

} // namespace incnn::runtime
