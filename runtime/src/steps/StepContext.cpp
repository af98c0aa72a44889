//===- StepContext.cpp - what a step handler may touch --------------------===//
//
// The value access of the step handlers: reading rows where they are
// stored (kept stores by slot, partial stores by row, old rows from the
// stash) and storing computed rows.
//
//===----------------------------------------------------------------------===//
#include "StepContext.h"

#include <cstring>

namespace incnn::runtime {

StepContext::StepContext(const Program &program,
                         const std::vector<int32_t> &tokens,
                         const std::vector<kernels::PackedLinear> &packed,
                         std::vector<ValueStore> &values, const RowSlots &slots,
                         std::vector<exact::AttentionState> &attention,
                         std::vector<std::vector<__int128>> &poolSums,
                         const std::vector<int32_t> &layerOf,
                         const std::vector<int32_t> &vqIndexOf,
                         Certificates &certificates, EditStats &stats,
                         ThreadPool &pool)
    : program(program), certificates(certificates), stats(stats),
      tokens(tokens), packed_(packed), values(values), slots(slots),
      attention_(attention), poolSums(poolSums), layerOf(layerOf),
      vqIndexOf(vqIndexOf), pool_(pool) {}

const float *StepContext::oldRow(const ValueStore &store, int64_t old) const {
  auto it = store.stash.find(old);
  if (it != store.stash.end())
    return it->second.data();
  if (store.keepAll && store.perToken)
    return store.data.data() +
           int64_t(slots.previous[size_t(old)]) * store.width;
  if (store.table) // the row of the old token and old codes
    return store.tableRow(
        store.tableByToken ? plan_->oldTokens[size_t(old)] : 0,
        [&](const ValueStore &codes) { return oldRow(codes, old); });
  return store.row(plan_->to[size_t(old)]);
}

const std::vector<float> &
StepContext::logical(int32_t id, std::vector<float> &scratch) const {
  const ValueStore &v = values[size_t(id)];
  if (v.inRowOrder(numTokens()))
    return v.data;
  scratch = gather(id, allRows(numTokens()));
  return scratch;
}

std::vector<float> StepContext::gather(int32_t id, const Rows &rows) const {
  const ValueStore &v = values[size_t(id)];
  std::vector<float> out(rows.size() * size_t(v.width));
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(out.data() + i * size_t(v.width), v.row(rows[i]),
                sizeof(float) * size_t(v.width));
  return out;
}

const float *StepContext::rowsOf(int32_t id, const Rows &rows,
                                 std::vector<float> &scratch) const {
  const ValueStore &v = values[size_t(id)];
  bool every = int64_t(rows.size()) == numTokens(); // sorted and unique
  if (every && (v.keepAll ? slots.identity : v.rows.size() == rows.size()))
    return v.data.data();
  scratch = gather(id, rows);
  return scratch.data();
}

float *StepContext::destination(int32_t id, const Rows &rows,
                                std::vector<float> &scratch, bool &direct) {
  ValueStore &v = values[size_t(id)];
  size_t size = rows.size() * size_t(v.width);
  direct = v.perToken && int64_t(rows.size()) == numTokens() && v.keepAll &&
           slots.identity && !(v.needsStash && plan_);
  std::vector<float> &buffer = direct ? v.data : scratch;
  if (buffer.size() != size)
    buffer.resize(size); // reused across from-scratch runs of one length
  return buffer.data();
}

void StepContext::storeRows(int32_t id, const Rows &rows,
                            std::vector<float> &&computed) {
  ValueStore &v = values[size_t(id)];
  size_t w = size_t(v.width);
  bool every = int64_t(rows.size()) == numTokens();
  if (!v.perToken ||
      (every && v.keepAll && slots.identity && !(v.needsStash && plan_))) {
    v.data = std::move(computed); // every row: nothing old to keep
    return;
  }
  if (!v.keepAll) {
    v.data = std::move(computed);
    // slotOf is -1 but at v.rows (Engine::runStep releases it so): reset
    // those instead of every row.
    if (v.slotOf.size() != tokens.size())
      v.slotOf.assign(tokens.size(), -1);
    else
      for (int64_t r : v.rows)
        v.slotOf[size_t(r)] = -1;
    v.rows = rows;
    for (size_t i = 0; i < rows.size(); ++i)
      v.slotOf[size_t(rows[i])] = int32_t(i);
    return;
  }
  v.data.resize(size_t(slots.capacity) * w);
  for (size_t i = 0; i < rows.size(); ++i) {
    float *dst = v.row(rows[i]);
    if (v.needsStash && plan_) {
      int64_t old = plan_->from[size_t(rows[i])];
      if (old >= 0 && !v.stash.count(old))
        v.stash.emplace(old, std::vector<float>(dst, dst + w));
    }
    std::memcpy(dst, computed.data() + i * w, sizeof(float) * w);
  }
}

} // namespace incnn::runtime
