//===- Certificates.cpp - VQ margin certificates --------------------------===//
#include "Certificates.h"

#include "../Kernels.h"

#include <algorithm>
#include <cmath>

namespace incnn::runtime {

void Certificates::find(const Program &program, bool enabled) {
  enabled_ = enabled;
  list.clear();
  size_t n = program.instrs.size();
  byAttention.assign(n, -1);
  byLinear.assign(n, -1);
  byVQ.assign(n, -1);
  std::vector<int64_t> producer(program.values.size(), -1),
      uses(program.values.size(), 0);
  for (size_t i = 0; i < n; ++i) {
    for (int32_t v : program.instrs[i].operands)
      ++uses[size_t(v)];
    for (int32_t r : program.instrs[i].results)
      producer[size_t(r)] = int64_t(i);
  }
  ++uses[size_t(program.outputValue)];
  for (size_t q = 0; q < n; ++q) {
    const Instr &vq = program.instrs[q];
    if (vq.op != OpCode::VectorQuantize)
      continue;
    Certificate c;
    c.vq = q;
    int32_t x = vq.operands[0];
    int64_t p = producer[size_t(x)];
    if (p < 0 || uses[size_t(x)] != 1)
      continue;
    if (program.instrs[size_t(p)].op == OpCode::Linear) {
      const Instr &lin = program.instrs[size_t(p)];
      int32_t a = lin.operands[0];
      if (uses[size_t(a)] != 1 || !program.values[size_t(a)].perToken)
        continue;
      c.linear = size_t(p);
      p = producer[size_t(a)];
      const Weight &w = program.weights[size_t(lin.weights[0])];
      int64_t out = w.shape[0], in = w.shape[1];
      const float *wp = w.ptr();
      double fro = 0, maxRow = 0;
      std::vector<double> colSum(size_t(in), 0.0);
      for (int64_t r = 0; r < out; ++r) {
        double rowSum = 0;
        for (int64_t k = 0; k < in; ++k) {
          double v = wp[r * in + k];
          fro += v * v;
          rowSum += std::fabs(v);
          colSum[size_t(k)] += std::fabs(v);
        }
        maxRow = std::max(maxRow, rowSum);
      }
      double maxCol = *std::max_element(colSum.begin(), colSum.end());
      c.frobenius = std::sqrt(fro);
      // ||W||_2 <= min(||W||_F, sqrt(||W||_1 ||W||_inf)).
      c.normBound = std::min(c.frobenius, std::sqrt(maxRow * maxCol)) * 1.0001;
      c.inWidth = in;
      if (lin.weights.size() > 1) {
        const Weight &b = program.weights[size_t(lin.weights[1])];
        double bn = 0;
        for (int64_t k = 0; k < b.numElements(); ++k)
          bn += double(b.ptr()[k]) * double(b.ptr()[k]);
        c.biasNorm = std::sqrt(bn);
      }
    }
    if (p < 0 || program.instrs[size_t(p)].op != OpCode::Attention)
      continue;
    c.attention = size_t(p);
    int32_t index = int32_t(list.size());
    byAttention[size_t(p)] = index;
    byVQ[q] = index;
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
