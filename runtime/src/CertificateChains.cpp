//===- CertificateChains.cpp - the certificate table's rules --------------===//
#include "CertificateChains.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace incnn::runtime {

namespace {

/// Each value's defining instruction (-1 for the token input) and number of
/// readers (the output counts as one).
struct UseCounts {
  std::vector<int64_t> producer;
  std::vector<int64_t> uses;
};

UseCounts useCounts(const Program &p) {
  UseCounts u{std::vector<int64_t>(p.values.size(), -1),
              std::vector<int64_t>(p.values.size(), 0)};
  for (size_t i = 0; i < p.instrs.size(); ++i) {
    for (int32_t v : p.instrs[i].operands)
      ++u.uses[size_t(v)];
    for (int32_t r : p.instrs[i].results)
      u.producer[size_t(r)] = int64_t(i);
  }
  ++u.uses[size_t(p.outputValue)];
  return u;
}

/// The chain ending at vector_quantize instruction `q`, if the structure
/// admits one: its input is read by nothing else and comes from an attention
/// instruction, directly or through one linear instruction whose per-token
/// input is read by nothing else.
std::optional<CertificateChain> chainOf(const Program &p, const UseCounts &u,
                                        size_t q) {
  const Instr &vq = p.instrs[q];
  if (vq.op != OpCode::VectorQuantize)
    return std::nullopt;
  CertificateChain chain;
  chain.vq = int32_t(q);
  int32_t x = vq.operands[0];
  int64_t from = u.producer[size_t(x)];
  if (from < 0 || u.uses[size_t(x)] != 1)
    return std::nullopt;
  if (p.instrs[size_t(from)].op == OpCode::Linear) {
    int32_t a = p.instrs[size_t(from)].operands[0];
    if (u.uses[size_t(a)] != 1 || !p.values[size_t(a)].perToken)
      return std::nullopt;
    chain.linear = int32_t(from);
    from = u.producer[size_t(a)];
  }
  if (from < 0 || p.instrs[size_t(from)].op != OpCode::Attention)
    return std::nullopt;
  chain.attention = int32_t(from);
  return chain;
}

std::string describe(const CertificateChain &c) {
  std::string s = "attention @" + std::to_string(c.attention);
  if (c.linear >= 0)
    s += " -> linear @" + std::to_string(c.linear);
  return s + " -> vector_quantize @" + std::to_string(c.vq);
}

std::string shortest(double x) {
  std::ostringstream os;
  os.precision(17);
  os << x;
  return os.str();
}

} // namespace

std::vector<CertificateChain> findCertificateChains(const Program &program) {
  UseCounts u = useCounts(program);
  std::vector<CertificateChain> chains;
  for (size_t q = 0; q < program.instrs.size(); ++q)
    if (std::optional<CertificateChain> c = chainOf(program, u, q))
      chains.push_back(*c);
  return chains;
}

LinearNorms linearNorms(const Program &program, const Instr &linear) {
  LinearNorms n;
  const Weight &w = program.weights[size_t(linear.weights[0])];
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
  n.frobenius = std::sqrt(fro);
  // ||W||_2 <= min(||W||_F, sqrt(||W||_1 ||W||_inf)); the factor covers the
  // rounding of these sums.
  n.elementwise = std::min(n.frobenius, std::sqrt(maxRow * maxCol)) * 1.0001;
  if (linear.weights.size() > 1) {
    const Weight &b = program.weights[size_t(linear.weights[1])];
    double bn = 0;
    for (int64_t k = 0; k < b.numElements(); ++k)
      bn += double(b.ptr()[k]) * double(b.ptr()[k]);
    n.biasNorm = std::sqrt(bn);
  }
  return n;
}

bool usesClaimedBound(const Program &program, const CertificateChain &chain,
                      const LinearNorms &norms) {
  if (chain.linear < 0 || !(chain.normBound > 0.0) ||
      !(chain.normBound < norms.elementwise))
    return false;
  const Instr &lin = program.instrs[size_t(chain.linear)];
  const Weight &w = program.weights[size_t(lin.weights[0])];
  return w.shape[0] <= kMaxVerifiedNormSide &&
         w.shape[1] <= kMaxVerifiedNormSide;
}

double chainNormBound(const Program &program, const CertificateChain &chain,
                      const LinearNorms &norms) {
  if (chain.linear < 0)
    return 1.0;
  return usesClaimedBound(program, chain, norms) ? chain.normBound
                                                 : norms.elementwise;
}

Status verifyCertificateChains(const Program &p) {
  UseCounts u = useCounts(p);
  std::vector<bool> taken(p.instrs.size(), false);
  for (size_t k = 0; k < p.certificateChains.size(); ++k) {
    const CertificateChain &c = p.certificateChains[k];
    std::string where =
        "certificate chain " + std::to_string(k) + " (" + describe(c) + "): ";
    if (c.vq < 0 || size_t(c.vq) >= p.instrs.size() ||
        p.instrs[size_t(c.vq)].op != OpCode::VectorQuantize)
      return Status::invalidArgument(where + "the last instruction is not a "
                                             "vector_quantize instruction");
    if (taken[size_t(c.vq)])
      return Status::invalidArgument(where + "a second chain for the same "
                                             "vector_quantize instruction");
    taken[size_t(c.vq)] = true;
    std::optional<CertificateChain> admitted = chainOf(p, u, size_t(c.vq));
    if (!admitted || admitted->attention != c.attention ||
        admitted->linear != c.linear)
      return Status::invalidArgument(
          where +
          "not a chain: the quantizer's input must come from the "
          "attention instruction, directly or through one linear "
          "instruction, through values nothing else reads" +
          (admitted ? " (the program admits " + describe(*admitted) + ")"
                    : std::string(" (the program admits none here)")));
    if (!std::isfinite(c.normBound) || c.normBound < 0.0)
      return Status::invalidArgument(where +
                                     "the norm bound must be finite and >= 0");
    if (c.linear < 0) {
      if (c.normBound != 0.0)
        return Status::invalidArgument(
            where + "a norm bound claimed for a chain without a linear "
                    "instruction");
      continue;
    }
    const Instr &lin = p.instrs[size_t(c.linear)];
    LinearNorms norms = linearNorms(p, lin);
    if (!usesClaimedBound(p, c, norms))
      continue;
    const Weight &w = p.weights[size_t(lin.weights[0])];
    if (!spectralNormAtMost(w.ptr(), w.shape[0], w.shape[1], c.normBound))
      return Status::invalidArgument(
          where + "the claimed bound ||W||_2 <= " + shortest(c.normBound) +
          " of weight '" + w.name +
          "' does not hold (s^2 I - W^T W is not provably positive definite "
          "in float64): the file is corrupt or forged; recompile the model "
          "with incnn-compile");
  }
  return Status::success();
}

} // namespace incnn::runtime
