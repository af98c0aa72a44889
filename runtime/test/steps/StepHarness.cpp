//===- StepHarness.cpp - each step alone against recomputation ------------===//
//
// The harness of the differential tests of the step handlers
// (runtime/src/steps/), one step at a time, in the manner of DBSP's operator
// tests. For a random program, an old document and a random batch of edits,
// an engine is set up from scratch on the old tokens and remapped for the
// edit; the step's operands then get their new values at exactly the rows
// whose bits changed, its input registers get the rows a compiler-built
// step list would put there (the changed rows, edited_rows, shifted_rows,
// their unions) plus, at random, some unchanged rows (a register may
// over-approximate), and the step alone runs through the engine's
// StepContext. Then
//  (a) every row of every result of the step equals a from-scratch
//      evaluation of the new tokens, bit for bit, and so do the accumulators
//      the step keeps (attention states, mean-pool sums);
//  (b) its output register holds every row whose value changed (exactly
//      those for vq_cutoff; its input rows for recompute_rows), no result
//      row outside it changed, and no other value changed.
// The same runs from scratch (no plan) must compute every row. Engines keep
// every row of every value here, so that each row can be compared; the
// minimal cache plans are the whole-session fuzzer's (../SessionTest.cpp).
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include "engine/Engine.h"
#include "steps/StepContext.h"
#include "steps/Steps.h"

#include "ProgramBuilder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <sstream>

namespace incnn::runtime::stepstest {

namespace {

/// A from-scratch run: its engine (for the accumulators) and every value's
/// rows in order.
struct Scratch {
  std::unique_ptr<Engine> engine;
  std::vector<std::vector<float>> values;
};

Scratch fromScratch(const Program &p, const std::vector<int32_t> &tokens) {
  Scratch s;
  s.engine = std::make_unique<Engine>(p, EngineOptions{1, false, true});
  s.engine->tokens = tokens;
  s.engine->run(nullptr);
  for (size_t v = 0; v < p.values.size(); ++v)
    s.values.push_back(s.engine->stored(int32_t(v)));
  return s;
}

bool sameRow(const float *a, const float *b, int64_t width) {
  return std::memcmp(a, b, sizeof(float) * size_t(width)) == 0;
}

std::string show(const Rows &rows) {
  std::ostringstream os;
  os << "{";
  for (size_t i = 0; i < rows.size(); ++i)
    os << (i ? " " : "") << rows[i];
  return os.str() + "}";
}

/// One step run alone: the program, the edit (null: from scratch) and the
/// from-scratch runs before and after it.
struct Case {
  const Program &p;
  const EditPlan *plan;
  const Scratch *before; ///< null from scratch
  const Scratch &after;
  std::mt19937 &rng;
  std::string where;
  StepRuns &runs;

  int64_t n() const { return int64_t(after.engine->tokens.size()); }
  int64_t width(int32_t v) const { return p.values[size_t(v)].width; }
  bool perToken(int32_t v) const { return p.values[size_t(v)].perToken; }
  Rows every(int32_t v) const { return perToken(v) ? allRows(n()) : Rows{0}; }

  /// Rows of value `v` the edit changed: new rows and rows whose bits
  /// differ from their old row's.
  Rows changed(int32_t v) const {
    if (!plan)
      return every(v);
    const std::vector<float> &o = before->values[size_t(v)],
                             &now = after.values[size_t(v)];
    int64_t w = width(v);
    if (!perToken(v))
      return sameRow(o.data(), now.data(), w) ? Rows{} : Rows{0};
    Rows rows;
    for (int64_t r = 0; r < n(); ++r) {
      int64_t from = plan->from[size_t(r)];
      if (from < 0 || !sameRow(o.data() + from * w, now.data() + r * w, w))
        rows.push_back(r);
    }
    return rows;
  }

  const Step &writer(int32_t reg) const {
    for (const Step &s : p.steps)
      if (s.output == reg)
        return s;
    ADD_FAILURE() << "no step writes register " << reg;
    return p.steps[0];
  }

  bool perTokenRegister(int32_t reg) const {
    const Step &w = writer(reg);
    if (w.kind == StepKind::Union)
      return perTokenRegister(w.inputs[0]);
    return w.instr < 0 || perToken(p.instrs[size_t(w.instr)].results[0]);
  }

  /// Register `reg` when every step before it reports exactly the rows
  /// whose value changed.
  Rows exactRegister(int32_t reg) const {
    const Step &w = writer(reg);
    switch (w.kind) {
    case StepKind::EditedRows:
      return plan ? plan->edited : allRows(n());
    case StepKind::ShiftedRows:
      return plan ? plan->shifted : allRows(n());
    case StepKind::Union: {
      Rows rows;
      for (int32_t in : w.inputs)
        rows = unite(rows, exactRegister(in));
      return rows;
    }
    default: {
      Rows rows;
      for (int32_t v : p.instrs[size_t(w.instr)].results)
        rows = unite(rows, changed(v));
      return rows;
    }
    }
  }

  /// exactRegister with, half the time, up to three unchanged rows more.
  Rows inputRegister(int32_t reg) const {
    Rows rows = exactRegister(reg);
    if (!plan || rng() % 2)
      return rows;
    int64_t domain = perTokenRegister(reg) ? n() : 1;
    Rows extra;
    for (uint32_t i = rng() % 3 + 1; i > 0; --i)
      extra.push_back(int64_t(rng() % uint64_t(domain)));
    std::sort(extra.begin(), extra.end());
    extra.erase(std::unique(extra.begin(), extra.end()), extra.end());
    return unite(rows, extra);
  }
};

/// Gives the operands of `in` their new values at their changed rows, as
/// the steps before would have (storing through the context stashes the
/// old rows where attention and mean pooling need them).
void storeOperands(const Case &c, StepContext &ctx, const Instr &in) {
  for (int32_t v : in.operands) {
    if (v == c.p.tokenValue)
      continue; // read through ctx.token()
    Rows rows = c.changed(v);
    int64_t w = c.width(v);
    std::vector<float> data;
    for (int64_t r : rows)
      data.insert(data.end(), c.after.values[size_t(v)].begin() + r * w,
                  c.after.values[size_t(v)].begin() + (r + 1) * w);
    ctx.storeRows(v, rows, std::move(data));
  }
}

/// The rows of value `v` in order as the context stores them (NaN where
/// no row is stored yet).
std::vector<float> rowsInOrder(const Case &c, StepContext &ctx, int32_t v) {
  const ValueStore &store = ctx.value(v);
  int64_t w = c.width(v), rows = c.perToken(v) ? c.n() : 1;
  std::vector<float> out(size_t(rows * w), NAN);
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = store.data.empty() ? nullptr : store.row(r);
    if (row && row + w <= store.data.data() + store.data.size())
      std::memcpy(out.data() + r * w, row, sizeof(float) * size_t(w));
  }
  return out;
}

/// Checks the attention state of instruction `index` row by row against the
/// from-scratch run's (exact accumulators: every bit).
void checkAttentionState(const Case &c, StepContext &ctx, size_t index) {
  const exact::AttentionState &got = ctx.attention(index),
                              &want =
                                  c.after.engine->context().attention(index);
  const Certificate *cert = ctx.certificates.ofAttention(index);
  int64_t H = want.numHeads, hd = want.headDim;
  ASSERT_EQ(got.numHeads, H);
  for (int64_t i = 0; i < c.n(); ++i) {
    int64_t g = ctx.slotOf()[size_t(i)];
    bool sameShift =
        std::memcmp(&got.shift[size_t(g * H)], &want.shift[size_t(i * H)],
                    sizeof(float) * size_t(H)) == 0;
    if (cert && cert->stale(i)) {
      // Deferred: the accumulators lag, but the shift holds and the bounds
      // kept for the next edit bound the true state from below.
      ++c.runs.deferredRows;
      ASSERT_TRUE(sameShift) << c.where << ": deferred row " << i;
      for (int64_t h = 0; h < H; ++h) {
        size_t at = size_t(i * H + h);
        ASSERT_LE(cert->lowDenom[at], double(want.denom[at]))
            << c.where << ": deferred row " << i << " head " << h;
        ASSERT_LE(cert->lowTop[at], want.top[at])
            << c.where << ": deferred row " << i << " head " << h;
      }
      continue;
    }
    bool same =
        sameShift &&
        std::equal(&got.top[size_t(g * H)], &got.top[size_t(g * H + H)],
                   &want.top[size_t(i * H)]) &&
        std::equal(&got.denom[size_t(g * H)], &got.denom[size_t(g * H + H)],
                   &want.denom[size_t(i * H)]) &&
        std::equal(&got.numer[size_t(g * H * hd)],
                   &got.numer[size_t((g + 1) * H * hd)],
                   &want.numer[size_t(i * H * hd)]);
    ASSERT_TRUE(same) << c.where << ": attention state of row " << i;
  }
}

/// (a) and (b) for one result `v` of the step: every row as from scratch
/// (but `certified` rows, which keep their old bits), rows outside
/// `allowed` untouched, every other changed row in `output`.
void checkResult(const Case &c, int32_t v, const std::vector<float> &before,
                 const std::vector<float> &after, const Rows &allowed,
                 const Rows &output, const Rows &certified = {}) {
  int64_t w = c.width(v), rows = c.perToken(v) ? c.n() : 1;
  const std::vector<float> &want = c.after.values[size_t(v)];
  ASSERT_EQ(after.size(), want.size()) << c.where << ": value " << v;
  for (int64_t r = 0; r < rows; ++r) {
    const float *got = after.data() + r * w;
    bool lags = std::binary_search(certified.begin(), certified.end(), r);
    EXPECT_TRUE(sameRow(got, (lags ? before : want).data() + r * w, w))
        << c.where << ": value " << v << " row " << r
        << " differs from a from-scratch run; output rows " << show(output);
    bool touched = !sameRow(got, before.data() + r * w, w);
    EXPECT_FALSE(touched &&
                 !std::binary_search(allowed.begin(), allowed.end(), r))
        << c.where << ": value " << v << " row " << r
        << " changed outside the step's rows " << show(allowed);
  }
  Rows all = c.changed(v), changed, missing;
  std::set_difference(all.begin(), all.end(), certified.begin(),
                      certified.end(), std::back_inserter(changed));
  std::set_difference(changed.begin(), changed.end(), output.begin(),
                      output.end(), std::back_inserter(missing));
  EXPECT_TRUE(missing.empty())
      << c.where << ": value " << v << " changed at " << show(missing)
      << " but the output register holds " << show(output);
}

/// Rows the step deferred: what each was charged covers how far its VQ
/// input really moved (||W||_2 times the move of its attention output from
/// the stored, stale row to a from-scratch run's).
void checkDeferredCharges(const Case &c, StepContext &ctx,
                          const Certificate &cert, int32_t out,
                          const std::vector<double> &budgets) {
  int64_t w = c.width(out);
  std::vector<float> stored = rowsInOrder(c, ctx, out);
  const std::vector<float> &now = c.after.values[size_t(out)];
  for (int64_t r = 0; r < c.n(); ++r) {
    if (!cert.stale(r))
      continue;
    double moved = 0;
    for (int64_t k = 0; k < w; ++k) {
      double d = double(now[size_t(r * w + k)]) - stored[size_t(r * w + k)];
      moved += d * d;
    }
    moved = cert.normBound * std::sqrt(moved);
    double charged = budgets[size_t(r)] - cert.budget[size_t(r)];
    EXPECT_LE(moved, charged) << c.where << ": deferred row " << r << " moved "
                              << moved << " but was charged " << charged;
    if (charged > 0)
      c.runs.chargeUse = std::max(c.runs.chargeUse, moved / charged);
  }
}

/// Rows an attention step left with their old output under a certificate:
/// those outside its output register that a from-scratch run computes
/// differently. The codes the certificate protects must not change there.
Rows certifiedRows(const Case &c, StepContext &ctx, size_t index,
                   const Rows &output) {
  const Certificate *cert = ctx.certificates.ofAttention(index);
  if (!c.plan || !cert)
    return {};
  int32_t out = c.p.instrs[index].results[0];
  int32_t codes = c.p.instrs[cert->vq].results[1];
  int64_t w = c.width(out), G = c.width(codes);
  const std::vector<float> &now = c.after.values[size_t(out)];
  std::vector<float> rows = rowsInOrder(c, ctx, out);
  Rows certified;
  for (int64_t r = 0; r < c.n(); ++r) {
    if (std::binary_search(output.begin(), output.end(), r) ||
        sameRow(rows.data() + r * w, now.data() + r * w, w))
      continue;
    certified.push_back(r);
    int64_t from = c.plan->from[size_t(r)];
    EXPECT_TRUE(from >= 0 &&
                sameRow(c.before->values[size_t(codes)].data() + from * G,
                        c.after.values[size_t(codes)].data() + r * G, G))
        << c.where << ": row " << r << " certified, but its codes changed";
  }
  return certified;
}

/// The step's own promise about its output register.
void checkOutputRule(const Case &c, const Step &step, const Rows &inputs0,
                     const Rows &output) {
  const Instr &in = c.p.instrs[size_t(step.instr)];
  switch (step.kind) {
  case StepKind::RecomputeRows: // the rows it recomputed
    EXPECT_EQ(output, inputs0) << c.where;
    break;
  case StepKind::VQCutoff: // exactly the rows whose codes flipped
    EXPECT_EQ(output, c.changed(in.results[0])) << c.where;
    break;
  case StepKind::VectorUpdate:
  case StepKind::PoolUpdate:
    EXPECT_TRUE(output.empty() || output == Rows{0}) << c.where;
    if (!c.plan)
      EXPECT_EQ(output, Rows{0}) << c.where;
    break;
  default: // attention_update: a superset of the changed rows
    if (!c.plan)
      EXPECT_EQ(output, allRows(c.n())) << c.where;
    break;
  }
}

/// Runs instruction step `si` alone and checks it.
void checkInstrStep(const Case &c, Engine &e, size_t si) {
  StepContext &ctx = e.context();
  const Step &step = c.p.steps[si];
  const Instr &in = c.p.instrs[size_t(step.instr)];
  std::vector<Rows> inputs;
  for (int32_t reg : step.inputs)
    inputs.push_back(ctx.rowSet(reg) = c.inputRegister(reg));
  storeOperands(c, ctx, in);
  std::vector<std::vector<float>> stored, before;
  for (size_t v = 0; v < c.p.values.size(); ++v) {
    stored.push_back(ctx.value(int32_t(v)).data);
    before.push_back(rowsInOrder(c, ctx, int32_t(v)));
  }
  const Certificate *cert =
      in.op == OpCode::Attention
          ? ctx.certificates.ofAttention(size_t(step.instr))
          : nullptr;
  std::vector<double> budgets = cert ? cert->budget : std::vector<double>();
  stepRules(step.kind).run(ctx, step);
  Rows output = ctx.rowSet(step.output);
  if (cert)
    checkDeferredCharges(c, ctx, *cert, in.results[0], budgets);
  for (size_t v = 0; v < c.p.values.size(); ++v) {
    int32_t id = int32_t(v);
    bool result = std::count(in.results.begin(), in.results.end(), id) > 0;
    if (!result) { // not the step's: not a bit moved
      EXPECT_EQ(ctx.value(id).data, stored[v]) << c.where << ": value " << v;
      continue;
    }
    // A VQ's codes are recomputed at every input row; its quantized rows
    // (and every other result) change only at the output rows.
    bool codes = in.op == OpCode::VectorQuantize && id == in.results[1];
    Rows certified;
    if (in.op == OpCode::Attention)
      certified = certifiedRows(c, ctx, size_t(step.instr), output);
    c.runs.certifiedRows += int64_t(certified.size());
    checkResult(c, id, before[v], rowsInOrder(c, ctx, id),
                codes ? inputs[0] : output, output, certified);
  }
  checkOutputRule(c, step, inputs[0], output);
  if (c.plan && step.kind == StepKind::AttentionUpdate)
    c.runs.deltaRows += ctx.updatedRowsOf(size_t(step.instr));
  if (c.plan && step.kind == StepKind::VQCutoff) {
    c.runs.cutoffRows += int64_t(inputs[0].size() - output.size());
    c.runs.flippedRows += int64_t(output.size());
  }
  if (in.op == OpCode::Attention)
    checkAttentionState(c, ctx, size_t(step.instr));
  if (in.op == OpCode::Pool && in.attrs.pool == PoolKind::Mean)
    EXPECT_TRUE(ctx.poolSum(size_t(step.instr)) ==
                c.after.engine->context().poolSum(size_t(step.instr)))
        << c.where << ": mean-pool sums";
}

/// Runs row-set step `si` alone (random input registers for a union) and
/// checks its output register against its definition.
void checkRowSetStep(const Case &c, Engine &e, size_t si) {
  StepContext &ctx = e.context();
  const Step &step = c.p.steps[si];
  std::set<int64_t> want;
  for (int32_t reg : step.inputs) {
    Rows rows;
    for (int64_t r = 0; r < c.n(); ++r)
      if (c.rng() % 4 == 0)
        rows.push_back(r);
    ctx.rowSet(reg) = rows;
    want.insert(rows.begin(), rows.end());
  }
  const std::vector<int32_t> &tokens = c.after.engine->tokens;
  for (int64_t r = 0; r < c.n() && step.kind != StepKind::Union; ++r) {
    int64_t from = c.plan ? c.plan->from[size_t(r)] : -1;
    bool edited =
        from < 0 || c.before->engine->tokens[size_t(from)] != tokens[size_t(r)];
    bool shifted = !c.plan || (from >= 0 && from != r);
    if (step.kind == StepKind::EditedRows ? edited : shifted)
      want.insert(r);
  }
  stepRules(step.kind).run(ctx, step);
  EXPECT_EQ(ctx.rowSet(step.output), Rows(want.begin(), want.end())) << c.where;
}

/// An engine in the state a step of the edit finds (every earlier step
/// done), or at the start of a from-scratch run.
std::unique_ptr<Engine> engineFor(const Case &c, bool certificates) {
  auto e = std::make_unique<Engine>(c.p, EngineOptions{1, certificates, true});
  if (c.plan) {
    e->tokens = c.before->engine->tokens;
    e->run(nullptr);
    e->tokens = c.plan->tokens;
    e->remapKept(*c.plan);
  } else {
    e->tokens = c.after.engine->tokens;
  }
  e->begin(c.plan);
  return e;
}

std::vector<int32_t> randomTokens(std::mt19937 &rng, int64_t n, int32_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t &x : t)
    x = int32_t(rng() % uint32_t(vocab));
  return t;
}

/// A batch of one or two random replaces, inserts and deletes.
std::vector<TokenEdit> randomEdits(std::mt19937 &rng, int64_t n,
                                   int32_t vocab) {
  std::vector<TokenEdit> edits;
  for (uint32_t i = rng() % 2 + 1; i > 0; --i) {
    int64_t len = int64_t(rng() % 3 + 1);
    switch (rng() % 3) {
    case 0:
      len = std::min(len, n);
      edits.push_back(TokenEdit::replace(int64_t(rng() % uint64_t(n - len + 1)),
                                         randomTokens(rng, len, vocab)));
      break;
    case 1:
      edits.push_back(TokenEdit::insert(int64_t(rng() % uint64_t(n + 1)),
                                        randomTokens(rng, len, vocab)));
      n += len;
      break;
    default:
      len = std::min(len, n - 1);
      edits.push_back(
          TokenEdit::erase(int64_t(rng() % uint64_t(n - len + 1)), len));
      n -= len;
    }
  }
  return edits;
}

Program buildProgram(const Config &config) {
  Program p = buildDecoder(config.decoder);
  for (const Instr &in : p.instrs)
    if (in.op == OpCode::VectorQuantize)
      for (float &x : p.weights[size_t(in.weights[0])].owned)
        x *= config.codebookScale;
  if (config.vqRecompute)
    for (Step &s : p.steps)
      if (s.kind == StepKind::VQCutoff)
        s.kind = StepKind::RecomputeRows;
  planCache(p, false);
  Status st = verifyProgram(p);
  EXPECT_TRUE(st.ok()) << st.error;
  return p;
}

} // namespace

StepRuns checkKind(StepKind kind, Config config, int seeds) {
  StepRuns runs;
  for (int seed = 1; seed <= seeds; ++seed) {
    config.decoder.seed = uint32_t(seed);
    Program p = buildProgram(config);
    std::mt19937 rng(uint32_t(seed) * 7919u + uint32_t(kind));
    // Long enough for delta updates to cost less than recomputation.
    int64_t length =
        4 + int64_t(rng() % uint32_t(config.decoder.maxPositions - 10));
    std::vector<int32_t> tokens =
        randomTokens(rng, length, config.decoder.vocab);
    EditPlan plan;
    Status st = planEdits(p, tokens,
                          randomEdits(rng, length, config.decoder.vocab), plan);
    EXPECT_TRUE(st.ok()) << st.error;
    Scratch before = fromScratch(p, tokens),
            after = fromScratch(p, plan.tokens);
    for (bool update : {true, false}) {
      for (size_t si = 0; si < p.steps.size(); ++si) {
        if (p.steps[si].kind != kind)
          continue;
        std::ostringstream where;
        where << stepKindName(kind) << " step " << si << " seed " << seed
              << (update ? " after an edit" : " from scratch");
        Case c{p,
               update ? &plan : nullptr,
               update ? &before : nullptr,
               after,
               rng,
               where.str(),
               runs};
        std::unique_ptr<Engine> e = engineFor(c, config.certificates);
        if (p.steps[si].instr < 0)
          checkRowSetStep(c, *e, si);
        else
          checkInstrStep(c, *e, si);
        if (::testing::Test::HasFailure())
          return runs;
        ++runs.checked;
      }
    }
  }
  return runs;
}

Config small(const std::string &family, const std::string &position) {
  Config c;
  c.decoder.family = family;
  c.decoder.position = position;
  c.decoder.layers = 2;
  c.decoder.dim = 16;
  c.decoder.heads = 4;
  c.decoder.kvHeads = 4;
  c.decoder.ffn = 24;
  c.decoder.vocab = 30;
  c.decoder.maxPositions = 64;
  return c;
}

} // namespace incnn::runtime::stepstest
