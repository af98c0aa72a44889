//===- Engine.cpp - the interpreter of a program's steps ------------------===//
#include "Engine.h"

#include "incnn/runtime/Runtime.h"

#include "../RowOps.h"
#include "../steps/Steps.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace incnn::runtime {

namespace {

/// Grows an attention state to `rows` slots (new slots zeroed).
void growRows(exact::AttentionState &s, int64_t rows) {
  if (rows <= s.numRows)
    return;
  int64_t H = s.numHeads, hd = s.headDim;
  s.shift.resize(size_t(rows * H), 0.0f);
  s.top.resize(size_t(rows * H), 0);
  s.denom.resize(size_t(rows * H), 0);
  s.numer.resize(size_t(rows * H * hd), 0);
  s.numRows = rows;
}

} // namespace

void RowSlots::reset(int64_t n) {
  slotOf.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    slotOf[size_t(i)] = int32_t(i);
  previous.clear();
  free.clear();
  released.clear();
  capacity = n;
  identity = true;
}

void RowSlots::remap(const EditPlan &p) {
  previous.swap(slotOf);
  for (int64_t r : p.removed)
    released.push_back(previous[size_t(r)]);
  slotOf.resize(p.from.size());
  identity = true;
  for (size_t i = 0; i < p.from.size(); ++i) {
    int32_t slot;
    if (p.from[i] >= 0) {
      slot = previous[size_t(p.from[i])];
    } else if (!free.empty()) {
      slot = free.back();
      free.pop_back();
    } else {
      slot = int32_t(capacity++);
    }
    slotOf[i] = slot;
    identity = identity && slot == int32_t(i);
  }
}

void RowSlots::finishUpdate() {
  free.insert(free.end(), released.begin(), released.end());
  released.clear();
}

Engine::Engine(const Program &program, const EngineOptions &options)
    : program(program), pool(options.numThreads),
      packed(packLinearWeights(program, &pool)),
      keepEverything(options.keepEverything),
      ctx(program, tokens, *packed, values, slots, attention, poolSums, layerOf,
          vqIndexOf, certificates, stats, pool) {
  ctx.checkpoint = [this] {
    if (interruptCheck && interruptCheck())
      throw Interrupted{};
  };
  values.resize(program.values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i].width = program.values[i].width;
    values[i].perToken = program.values[i].perToken;
    // The compiler's cache plan, verified sufficient at load.
    values[i].keepAll = program.values[i].keepAllRows || options.keepEverything;
    values[i].slots = &slots;
  }
  // Kept values that are rows of a table are read from it, not stored.
  for (size_t i = 0; i < values.size() && !options.keepEverything; ++i)
    if (std::optional<TableRows> t = tableRowsOf(program, int32_t(i));
        t && program.values[i].tableRows) {
      if (t->weight < 0 && !keyedTables)
        keyedTables = tabulateKeyedRows(program, *packed, &pool);
      if (t->weight < 0 && (*keyedTables)[i].empty())
        continue; // past the tables' caps: stored
      ValueStore &v = values[i];
      v.keepAll = false;
      v.tokens = &tokens;
      if (t->weight >= 0) {
        const Weight &w = program.weights[size_t(t->weight)];
        v.table = w.ptr();
        v.tableRows = w.numElements() / v.width;
        v.tableByToken = t->index < 0;
        if (t->index >= 0) // a codebook [1, K, width]
          v.tableCodes = {{&values[size_t(t->index)], w.shape[1]}};
        continue;
      }
      v.table = (*keyedTables)[i].data();
      v.tableRows = int64_t((*keyedTables)[i].size()) / v.width;
      v.tableByToken = t->key.token;
      for (size_t k = 0; k < t->codes.size(); ++k) {
        ValueStore &codes = values[size_t(t->codes[k])];
        codes.needsStash = true; // old rows are the old codes' table rows
        v.tableCodes.emplace_back(&codes, t->radix[k]);
      }
    }
  attention.resize(program.instrs.size());
  poolSums.resize(program.instrs.size());
  layerOf.assign(program.instrs.size(), -1);
  vqIndexOf.assign(program.instrs.size(), -1);
  lastUse.assign(program.values.size(), -1);
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    const Instr &in = program.instrs[i];
    for (int32_t v : in.operands)
      lastUse[size_t(v)] = int64_t(i);
    if (in.op == OpCode::Attention) {
      layerOf[i] = int32_t(numLayers++);
      // Old key/value rows are needed to subtract their terms.
      for (size_t k = 1; k < in.operands.size(); ++k)
        values[size_t(in.operands[k])].needsStash = true;
    }
    if (in.op == OpCode::Pool && in.attrs.pool == PoolKind::Mean)
      values[size_t(in.operands[0])].needsStash = true; // old terms
    if (in.op == OpCode::VectorQuantize)
      vqIndexOf[i] = int32_t(numVQ++);
  }
  // A per-token output's old rows tell which rows changed.
  values[size_t(program.outputValue)].needsStash =
      program.values[size_t(program.outputValue)].perToken;
  lastUse[size_t(program.outputValue)] = int64_t(program.instrs.size());
  certificates.build(program, options.vqCertificates);
}

void Engine::run(const EditPlan *plan) {
  begin(plan);
  stats.stepMicros.assign(program.steps.size(), 0.0);
  for (size_t i = 0; i < program.steps.size(); ++i) {
    auto start = std::chrono::steady_clock::now();
    ctx.checkpoint();
    runStep(program.steps[i]);
    stats.stepMicros[i] = std::chrono::duration<double, std::micro>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  }
  finish();
}

void Engine::begin(const EditPlan *plan) {
  ctx.plan_ = plan;
  int64_t n = numTokens();
  ctx.rowSets.assign(size_t(program.numRowSets), Rows());
  stats.macs = 0;
  stats.dirtyRows.assign(size_t(numLayers), plan ? 0 : n);
  stats.updatedRows.assign(size_t(numLayers), 0);
  stats.codeFlips.assign(size_t(numVQ), plan ? 0 : n);
  stats.certifiedRows = 0;
  stats.deferredRows = 0;
  stats.stateBytes = 0;
  stats.recomputedRows.clear();
  stats.attentionMicros.assign(plan ? size_t(numLayers) : 0, AttentionMicros{});
  certificates.prepare(n, !plan);
  if (!plan)
    slots.reset(n);
  if (keepEverything) // the token input as a value, like every other
    values[size_t(program.tokenValue)].data.assign(tokens.begin(),
                                                   tokens.end());
}

void Engine::runStep(const Step &step) {
  stepRules(step.kind).run(ctx, step);
  if (step.instr < 0)
    return; // a row-set step: no values
  // Partial stores are only needed within an update.
  for (int32_t v : program.instrs[size_t(step.instr)].operands) {
    ValueStore &store = values[size_t(v)];
    if (lastUse[size_t(v)] == int64_t(step.instr) && store.perToken &&
        !store.keepAll) {
      // Swapped out, not cleared: a cleared vector keeps its capacity, and
      // a from-scratch run's capacity is every row. The row index (4 bytes
      // a row) stays, all -1, for the next update's rows.
      std::vector<float>().swap(store.data);
      for (int64_t r : store.rows)
        if (size_t(r) < store.slotOf.size())
          store.slotOf[size_t(r)] = -1;
      store.rows.clear();
    }
  }
}

void Engine::finish() {
  int64_t n = numTokens();
  findChangedOutputRows();
  for (ValueStore &v : values)
    v.stash.clear();
  slots.finishUpdate();
  if (!ctx.plan_)
    reserveSlack(n);
  const ValueStore &v = values[size_t(program.outputValue)];
  outputInRowOrder = !v.perToken || (v.keepAll && slots.identity &&
                                     v.data.size() == size_t(n * v.width));
  if (outputInRowOrder)
    outputRows.clear();
  else
    outputRows = ctx.gather(program.outputValue, allRows(n));
  const std::vector<float> &out = output();
  checkFinite(program, program.instrs.size(), out.data(), int64_t(out.size()));
  stats.macsFull = countMacs(program, n);
  stats.numTokens = n;
  ctx.plan_ = nullptr;
}

void Engine::findChangedOutputRows() {
  Rows &changed = stats.changedOutputRows;
  changed.clear();
  const ValueStore &out = values[size_t(program.outputValue)];
  if (!out.perToken)
    return;
  if (!ctx.plan_) {
    changed = allRows(numTokens());
    return;
  }
  // Rows outside the output's dirty set kept their values (an edited row
  // whose codes held included); a row changed if its token is new or
  // different, or its old values differ.
  const Rows &edited = ctx.plan_->edited;
  for (int64_t r : unite(ctx.rowSets[size_t(program.outputRows)], edited)) {
    int64_t old = ctx.plan_->from[size_t(r)];
    auto it = old < 0 ? out.stash.end() : out.stash.find(old);
    if (std::binary_search(edited.begin(), edited.end(), r) ||
        (it != out.stash.end() &&
         std::memcmp(it->second.data(), out.row(r),
                     sizeof(float) * size_t(out.width)) != 0))
      changed.push_back(r);
  }
}

const std::vector<float> &Engine::output() const {
  return outputInRowOrder ? values[size_t(program.outputValue)].data
                          : outputRows;
}

void Engine::reserveSlack(int64_t n) {
  // Room for inserts: growing a store past its capacity copies every row.
  size_t rows = size_t(n + n / 8 + 64);
  for (ValueStore &v : values)
    if (v.perToken && v.keepAll)
      v.data.reserve(rows * size_t(v.width));
  for (size_t i = 0; i < program.instrs.size(); ++i)
    if (program.instrs[i].op == OpCode::Attention) {
      exact::AttentionState &s = attention[i];
      s.shift.reserve(rows * size_t(s.numHeads));
      s.top.reserve(rows * size_t(s.numHeads));
      s.denom.reserve(rows * size_t(s.numHeads));
      s.numer.reserve(rows * size_t(s.numHeads * s.headDim));
    }
}

void Engine::remapKept(const EditPlan &p) {
  for (ValueStore &v : values)
    v.stash.clear();
  bool identity = !p.lengthChanged && p.shifted.empty() && p.removed.empty();
  if (identity) {
    slots.previous = slots.slotOf; // old row r is new row r
    return;
  }
  slots.remap(p);
  // New rows' slots may lie past the end: grow (amortized) the kept stores
  // and the attention states.
  for (ValueStore &v : values)
    if (v.perToken && v.keepAll && !v.data.empty())
      v.data.resize(size_t(slots.capacity * v.width));
  for (size_t i = 0; i < program.instrs.size(); ++i)
    if (program.instrs[i].op == OpCode::Attention)
      growRows(attention[i], slots.capacity);
  certificates.remap(p.from);
  certificates.growSlots(slots.capacity);
}

void Engine::clear() {
  slots.reset(0);
  for (ValueStore &v : values) {
    v.data.clear();
    v.rows.clear();
    v.slotOf.clear();
    v.stash.clear();
  }
}

Engine::Snapshot Engine::snapshot() const {
  Snapshot s{tokens, stats, {}, {}};
  for (const Certificate &c : certificates.all()) {
    s.budgets.push_back(c.budget);
    s.refNorms.push_back(c.refNorm);
  }
  return s;
}

void Engine::restore(Snapshot &&before) {
  tokens = std::move(before.tokens);
  clear();
  std::function<bool()> check = std::move(interruptCheck);
  interruptCheck = nullptr; // the old state must come back whole
  // The old tokens were evaluated before, so this run stays in the contract;
  // exactness makes its cached values and accumulators those of before.
  run(nullptr);
  std::vector<Certificate> &all = certificates.all();
  for (size_t i = 0; i < all.size(); ++i) {
    all[i].budget = std::move(before.budgets[i]);
    all[i].refNorm = std::move(before.refNorms[i]);
  }
  stats = std::move(before.stats);
  interruptCheck = std::move(check);
}

int64_t Engine::cacheBytes() const {
  int64_t bytes = 0;
  for (const ValueStore &v : values)
    if (v.perToken && v.keepAll)
      bytes += int64_t(v.data.size() * sizeof(float));
  for (const exact::AttentionState &s : attention)
    bytes += s.numRows * s.bytesPerRow();
  return bytes;
}

} // namespace incnn::runtime
