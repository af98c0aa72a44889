//===- Quantize.cpp - VQ of a set of rows, shared by two steps ------------===//
#include "Quantize.h"

#include "../RowOps.h"

namespace incnn::runtime {

QuantizedRows quantizeRows(StepContext &ctx, size_t index, const Rows &rows,
                           bool withDistances) {
  const Program &p = ctx.program;
  const Instr &in = p.instrs[index];
  const Weight &cb = p.weights[size_t(in.weights[0])];
  int64_t K = cb.shape[1];
  QuantizedRows q;
  q.groups = cb.shape[0];
  q.width = ctx.value(in.operands[0]).width;
  q.input = ctx.rowsOf(in.operands[0], rows, q.scratch);
  size_t count = rows.size() * size_t(q.width);
  checkFinite(p, index, q.input, int64_t(count));
  q.quantized.resize(count);
  q.codes.resize(rows.size() * size_t(q.groups));
  q.distances.resize(withDistances ? rows.size() * size_t(q.groups * K) : 0);
  kernels::vectorQuantize(
      q.input, int64_t(rows.size()), q.width, cb.ptr(), q.groups, K,
      q.quantized.data(), q.codes.data(),
      ctx.poolFor(double(rows.size()) * double(K) * double(q.width)),
      withDistances ? q.distances.data() : nullptr);
  ctx.stats.macs += uint64_t(rows.size()) * uint64_t(K) * uint64_t(q.width);
  return q;
}

} // namespace incnn::runtime
