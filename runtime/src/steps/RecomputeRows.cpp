//===- RecomputeRows.cpp - the recompute_rows step ------------------------===//
//
// Rows of a per-token instruction are recomputed from its operands with the
// same row-invariant kernels as any other run; the result's dirty set is
// the rows recomputed. A VectorQuantize updated this way (compiled without
// VQ cutoff) re-quantizes its rows and keeps them all dirty.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "../engine/Engine.h"
#include "Steps.h"

#include <cmath>

namespace incnn::runtime {

namespace {

void quantizeRows(Engine &e, const Instr &in, size_t index, const Rows &rows) {
  const Program &p = e.program;
  const Weight &cb = p.weights[size_t(in.weights[0])];
  int64_t G = cb.shape[0], K = cb.shape[1];
  int32_t input = in.operands[0];
  int64_t width = e.values[size_t(input)].width;
  std::vector<float> scratch;
  const float *x = e.rowsOf(input, rows, scratch);
  size_t count = rows.size() * size_t(width);
  checkFinite(p, index, x, int64_t(count));
  std::vector<float> quantized(count), codes(rows.size() * size_t(G));
  kernels::vectorQuantize(
      x, int64_t(rows.size()), width, cb.ptr(), G, K, quantized.data(),
      codes.data(), e.poolFor(double(rows.size()) * double(K) * double(width)));
  e.stats.macs += uint64_t(rows.size()) * uint64_t(K) * uint64_t(width);
  if (e.plan)
    e.stats.codeFlips[size_t(e.vqIndexOf[index])] = int64_t(rows.size());
  e.storeRows(in.results[1], rows, std::move(codes));
  e.storeRows(in.results[0], rows, std::move(quantized));
}

} // namespace

void runRecomputeRows(Engine &e, const Step &s) {
  const Program &p = e.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  const Rows &rows = e.rowSets[size_t(s.inputs[0])];
  e.rowSets[size_t(s.output)] = rows;
  if (in.op == OpCode::VectorQuantize) {
    quantizeRows(e, in, index, rows);
    return;
  }
  const ValueInfo &result = p.values[size_t(in.results[0])];
  if (rows.empty()) {
    e.storeRows(in.results[0], rows, {});
    return;
  }
  int64_t m = int64_t(rows.size());
  std::vector<std::vector<float>> scratch(in.operands.size());
  std::vector<const float *> inputPtrs;
  for (size_t k = 0; k < in.operands.size() && in.op != OpCode::Embed; ++k) {
    int32_t v = in.operands[k];
    inputPtrs.push_back(p.values[size_t(v)].perToken
                            ? e.rowsOf(v, rows, scratch[k])
                            : e.values[size_t(v)].data.data());
  }
  std::vector<int32_t> rowTokens;
  if (in.op == OpCode::Embed)
    for (int64_t r : rows)
      rowTokens.push_back(e.tokens[size_t(r)]);
  std::vector<float> computed;
  bool direct = false;
  float *out = e.destination(in.results[0], rows, computed, direct);
  runRows(p, in, &e.packed[index], inputPtrs.data(), m, rowTokens.data(),
          rows.data(), out,
          e.poolFor(double(m) * double(result.width) *
                    double(in.op == OpCode::Linear
                               ? p.values[size_t(in.operands[0])].width
                               : 1)));
  e.stats.macs += rowMacs(p, in, m);
  if (Certificate *c = e.certificates.ofLinear(index)) {
    // The reference norms of the certified linear layer's inputs.
    int64_t w = p.values[size_t(in.operands[0])].width;
    for (int64_t i = 0; i < m; ++i) {
      double norm = 0;
      for (int64_t k = 0; k < w; ++k)
        norm +=
            double(inputPtrs[0][i * w + k]) * double(inputPtrs[0][i * w + k]);
      c->refNorm[size_t(rows[size_t(i)])] = std::sqrt(norm);
    }
  }
  if (!direct)
    e.storeRows(in.results[0], rows, std::move(computed));
}

} // namespace incnn::runtime
