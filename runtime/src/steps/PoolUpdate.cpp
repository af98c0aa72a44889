//===- PoolUpdate.cpp - the pool_update step ------------------------------===//
//
// Last- and first-token pooling copy row n-1 (row 0) when it changed or
// another row took its place. Mean
// pooling keeps an exact, order-independent sum per column: each element is
// rounded to a multiple of 2^-64 and added as a 128-bit integer, so removing
// a changed row's old term and adding its new one gives the same sum as a
// from-scratch pass, at O(changed rows x width). Inputs must be finite with
// |x| <= 2^40 (docs/exactness.md), which keeps 2^20 rows of terms in range.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "StepContext.h"
#include "Steps.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace incnn::runtime {

namespace {

constexpr float kMaxPooled = 1099511627776.0f; // 2^40

/// round(x * 2^64) for finite |x| <= 2^40, exactly, ties away from zero.
__int128 toFixed(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  int32_t exponent = int32_t((bits >> 23) & 0xff);
  int64_t mantissa = bits & 0x7fffff;
  if (exponent == 0)
    exponent = 1; // subnormal
  else
    mantissa |= 0x800000;
  // x = mantissa * 2^(exponent - 150); times 2^64:
  int shift = exponent - 150 + 64;
  __int128 v;
  if (shift >= 0) {
    v = __int128(mantissa) << shift;
  } else if (shift > -40) {
    int64_t half = int64_t(1) << (-shift - 1);
    v = __int128((mantissa + half) >> -shift);
  } else {
    v = 0;
  }
  return (bits >> 31) ? -v : v;
}

void addRow(std::vector<__int128> &sum, const float *row, int sign) {
  for (size_t c = 0; c < sum.size(); ++c)
    sum[c] += sign * toFixed(row[c]);
}

} // namespace

static void runPoolUpdate(StepContext &ctx, const Step &s) {
  const Program &p = ctx.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  const EditPlan *plan = ctx.plan();
  const Rows &rows = ctx.rowSet(s.inputs[0]);
  Rows &out = ctx.rowSet(s.output);
  out.clear();
  int64_t n = ctx.numTokens();
  const ValueStore &x = ctx.value(in.operands[0]);
  for (int64_t r : rows)
    if (!exact::withinBound(x.row(r), x.width, kMaxPooled))
      throwBreach(p, index, Breach::PoolInput);
  if (in.attrs.pool != PoolKind::Mean) {
    // Unchanged unless the row's bits changed or another row took its place.
    bool last = in.attrs.pool == PoolKind::Last;
    int64_t r = last ? n - 1 : 0;
    int64_t oldR = last ? int64_t(plan ? plan->to.size() : 0) - 1 : 0;
    if (plan && plan->from[size_t(r)] == oldR &&
        !std::binary_search(rows.begin(), rows.end(), r))
      return;
    std::vector<float> pooled(x.row(r), x.row(r) + x.width);
    ctx.storeRows(in.results[0], {0}, std::move(pooled));
    out = {0};
    return;
  }
  std::vector<__int128> &sum = ctx.poolSum(index);
  if (!plan) {
    sum.assign(size_t(x.width), 0);
    for (int64_t r = 0; r < n; ++r)
      addRow(sum, x.row(r), +1);
  } else {
    if (rows.empty() && !plan->lengthChanged)
      return;
    auto oldRow = [&](int64_t old) { return ctx.oldRow(x, old); };
    for (int64_t r : plan->removed)
      addRow(sum, oldRow(r), -1);
    for (int64_t r : rows) {
      if (plan->from[size_t(r)] >= 0)
        addRow(sum, oldRow(plan->from[size_t(r)]), -1);
      addRow(sum, x.row(r), +1);
    }
  }
  std::vector<float> pooled(size_t(x.width));
  const double scale = std::ldexp(1.0, -64) / double(n);
  for (size_t c = 0; c < pooled.size(); ++c)
    pooled[c] = float(double(sum[c]) * scale);
  ctx.storeRows(in.results[0], {0}, std::move(pooled));
  out = {0};
}

static bool poolUpdateUpdates(const Program &, const Instr &in) {
  return in.op == OpCode::Pool;
}

static void poolUpdateCacheNeeds(const Program &p, const Step &s,
                                 CacheNeeds &needs) {
  needs.takesChanges(p.instrs[size_t(s.instr)].operands[0], s.inputs[0]);
  needs.keep(p.instrs[size_t(s.instr)].operands[0], "reads at every row");
}

const StepRules kPoolUpdateStep = {poolUpdateUpdates, poolUpdateCacheNeeds,
                                   runPoolUpdate};

} // namespace incnn::runtime
