//===- Session.cpp - incremental evaluation of one document ---------------===//
//
// After an edit, every instruction is brought up to date in program order.
// Each value has a dirty row set (rows whose bits may differ from before);
// token-local instructions recompute exactly the union of their operands'
// dirty rows, attention recomputes rows whose query changed and delta-updates
// the others' exact accumulators, VQ keeps dirty only the rows whose codes
// flipped (early cutoff), and pooling reads the cached rows.
//
// Values the cache plan keeps (ValueInfo::keepAllRows) hold every row between
// edits and follow insertions/deletions; the others hold only the rows
// computed during the current update.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Runtime.h"

#include "ExactAttention.h"
#include "Kernels.h"
#include "RowOps.h"
#include "ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <unordered_map>

namespace incnn::runtime {

TokenEdit TokenEdit::replace(int64_t at, std::vector<int32_t> tokens) {
  TokenEdit e;
  e.kind = Kind::Replace;
  e.at = at;
  e.tokens = std::move(tokens);
  return e;
}

TokenEdit TokenEdit::insert(int64_t at, std::vector<int32_t> tokens) {
  TokenEdit e;
  e.kind = Kind::Insert;
  e.at = at;
  e.tokens = std::move(tokens);
  return e;
}

TokenEdit TokenEdit::erase(int64_t at, int64_t count) {
  TokenEdit e;
  e.kind = Kind::Delete;
  e.at = at;
  e.count = count;
  return e;
}

namespace {

using Rows = std::vector<int64_t>; // sorted, unique

Rows unite(const Rows &a, const Rows &b) {
  Rows out;
  out.reserve(a.size() + b.size());
  std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                 std::back_inserter(out));
  return out;
}

Rows allRows(int64_t n) {
  Rows rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    rows[size_t(i)] = i;
  return rows;
}

/// The result of applying a batch of edits to a token sequence.
struct EditPlan {
  std::vector<int32_t> tokens;
  std::vector<int64_t> from; ///< new row -> old row, -1 if inserted
  std::vector<int64_t> to;   ///< old row -> new row, -1 if deleted
  Rows edited;               ///< rows whose token is new or different
  Rows shifted;              ///< kept rows whose position changed
  Rows removed;              ///< old rows deleted
  bool lengthChanged = false;
};

Status checkTokenIds(const Program &program, const std::vector<int32_t> &ids,
                     size_t editIndex) {
  for (int32_t id : ids)
    if (id < 0 || id >= program.vocabSize)
      return Status::failure("edit " + std::to_string(editIndex) +
                             ": token id " + std::to_string(id) +
                             " is outside the vocabulary [0, " +
                             std::to_string(program.vocabSize) + ")");
  return Status::success();
}

/// Applies `edits` to `tokens`, tracking where each row came from.
Status planEdits(const Program &program, const std::vector<int32_t> &tokens,
                 const std::vector<TokenEdit> &edits, EditPlan &plan) {
  std::vector<int32_t> cur = tokens;
  std::vector<int64_t> origin(tokens.size());
  for (size_t i = 0; i < origin.size(); ++i)
    origin[i] = int64_t(i);
  for (size_t e = 0; e < edits.size(); ++e) {
    const TokenEdit &edit = edits[e];
    int64_t n = int64_t(cur.size());
    std::string where = "edit " + std::to_string(e) + ": ";
    switch (edit.kind) {
    case TokenEdit::Kind::Replace: {
      int64_t len = int64_t(edit.tokens.size());
      if (len == 0)
        return Status::failure(where + "replace needs at least one token");
      if (edit.at < 0 || edit.at > n - len)
        return Status::failure(where + "replace of " + std::to_string(len) +
                               " token(s) at " + std::to_string(edit.at) +
                               " is outside the sequence of " +
                               std::to_string(n) + " tokens");
      if (Status st = checkTokenIds(program, edit.tokens, e); !st.ok())
        return st;
      std::copy(edit.tokens.begin(), edit.tokens.end(), cur.begin() + edit.at);
      break;
    }
    case TokenEdit::Kind::Insert: {
      if (edit.tokens.empty())
        return Status::failure(where + "insert needs at least one token");
      if (edit.at < 0 || edit.at > n)
        return Status::failure(where + "insert position " +
                               std::to_string(edit.at) + " is outside [0, " +
                               std::to_string(n) + "]");
      if (Status st = checkTokenIds(program, edit.tokens, e); !st.ok())
        return st;
      cur.insert(cur.begin() + edit.at, edit.tokens.begin(), edit.tokens.end());
      origin.insert(origin.begin() + edit.at, edit.tokens.size(), -1);
      break;
    }
    case TokenEdit::Kind::Delete: {
      if (edit.count <= 0)
        return Status::failure(where + "delete needs a positive count");
      if (edit.at < 0 || edit.at > n - edit.count)
        return Status::failure(
            where + "delete of " + std::to_string(edit.count) +
            " token(s) at " + std::to_string(edit.at) +
            " is outside the sequence of " + std::to_string(n) + " tokens");
      cur.erase(cur.begin() + edit.at, cur.begin() + edit.at + edit.count);
      origin.erase(origin.begin() + edit.at,
                   origin.begin() + edit.at + edit.count);
      break;
    }
    }
  }
  if (cur.empty())
    return Status::failure("the edits would leave an empty document");
  if (int64_t(cur.size()) > program.maxPositions)
    return Status::failure("the edits would make the document " +
                           std::to_string(cur.size()) +
                           " tokens long, over the context window of " +
                           std::to_string(program.maxPositions));
  plan.tokens = std::move(cur);
  plan.from = std::move(origin);
  plan.to.assign(tokens.size(), -1);
  plan.edited.clear();
  plan.shifted.clear();
  plan.removed.clear();
  for (size_t i = 0; i < plan.from.size(); ++i) {
    int64_t r = plan.from[i];
    if (r < 0 || plan.tokens[i] != tokens[size_t(r)])
      plan.edited.push_back(int64_t(i));
    if (r >= 0) {
      plan.to[size_t(r)] = int64_t(i);
      if (r != int64_t(i))
        plan.shifted.push_back(int64_t(i));
    }
  }
  for (size_t r = 0; r < plan.to.size(); ++r)
    if (plan.to[r] < 0)
      plan.removed.push_back(int64_t(r));
  plan.lengthChanged = plan.tokens.size() != tokens.size();
  return Status::success();
}

/// Storage of one value: all rows (kept values, vectors) or only the rows
/// computed in the current update.
struct ValueStore {
  int64_t width = 0;
  bool perToken = true;
  bool keepAll = true;
  std::vector<float> data;
  Rows rows;                   ///< partial stores: which rows `data` holds
  std::vector<int32_t> slotOf; ///< partial stores: row -> slot, or -1
  /// Old rows overwritten or deleted in this update, by old row index
  /// (kept for attention keys/values, which subtract old terms).
  std::unordered_map<int64_t, std::vector<float>> stash;
  bool needsStash = false;

  const float *row(int64_t r) const {
    if (keepAll || !perToken)
      return data.data() + r * width;
    int32_t slot = slotOf[size_t(r)];
    return slot < 0 ? nullptr : data.data() + int64_t(slot) * width;
  }
};

} // namespace

Status applyEditsToTokens(const Program &program, std::vector<int32_t> &tokens,
                          const std::vector<TokenEdit> &edits) {
  EditPlan plan;
  if (Status st = planEdits(program, tokens, edits, plan); !st.ok())
    return st;
  tokens = std::move(plan.tokens);
  return Status::success();
}

struct Session::Impl {
  const Program &program;
  ThreadPool pool;
  std::vector<kernels::PackedLinear> packed;
  std::vector<ValueStore> values;
  std::vector<exact::AttentionState> attention; ///< per instruction
  std::vector<int32_t> layerOf, vqIndexOf;      ///< per instruction, or -1
  std::vector<int64_t> lastUse;                 ///< per value
  std::vector<int32_t> tokens;
  EditStats stats;
  bool valid = false;
  int64_t numLayers = 0, numVQ = 0;

  /// A VQ op fed by attention through one linear layer (or directly): rows
  /// whose attention output moved little are certified to keep their codes
  /// without running the linear layer or the codebook search.
  struct Certificate {
    size_t attention = 0, linear = SIZE_MAX, vq = 0;
    double normBound = 1.0; ///< upper bound of ||W||_2
    double frobenius = 0.0; ///< ||W||_F, for rounding bounds
    double biasNorm = 0.0;
    int64_t inWidth = 0;
    std::vector<double> budget;  ///< per row: drift the codes still tolerate
    std::vector<double> refNorm; ///< per row: ||attention output|| at reference
  };
  std::vector<Certificate> certificates;
  std::vector<int32_t> certificateOf; ///< per instruction, or -1
  bool useCertificates;

  Impl(const Program &program, const SessionOptions &options)
      : program(program), pool(options.numThreads),
        useCertificates(options.vqCertificates) {}

  /// The pool for `work` multiply-accumulates, or none when waking threads
  /// would cost more than the work (small incremental updates).
  ThreadPool *poolFor(double work) { return work >= 4.0e5 ? &pool : nullptr; }

  void setup();
  void enforceCachePlan();
  void findCertificates();
  /// The budget of a row from its VQ input and reference norm.
  double rowBudget(const Certificate &c, const float *x, double aNorm) const;
  void run(const EditPlan *plan);
  void step(size_t index, const EditPlan *plan, std::vector<Rows> &dirty);
  void attentionStep(size_t index, const EditPlan *plan,
                     std::vector<Rows> &dirty);
  void vqStep(size_t index, const EditPlan *plan, std::vector<Rows> &dirty);
  void remapKept(const EditPlan &plan);
  /// What an update changes besides the cached values, which a from-scratch
  /// run on the old tokens restores bit for bit.
  struct Snapshot {
    std::vector<int32_t> tokens;
    EditStats stats;
    std::vector<std::vector<double>> budgets, refNorms;
  };
  Snapshot snapshot() const;
  /// Rebuilds the state of `before` after an update was refused midway.
  void restore(Snapshot &&before);
  void storeRows(int32_t id, const Rows &rows, std::vector<float> &&computed,
                 const EditPlan *plan);
  /// Copies rows `rows` of value `id` into a contiguous buffer.
  std::vector<float> gather(int32_t id, const Rows &rows) const;
};

void Session::Impl::setup() {
  packed = packLinearWeights(program, &pool);
  values.resize(program.values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i].width = program.values[i].width;
    values[i].perToken = program.values[i].perToken;
    values[i].keepAll = program.values[i].keepAllRows;
  }
  attention.resize(program.instrs.size());
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
      // Delta updates read every key, value and query row.
      for (int32_t v : in.operands)
        values[size_t(v)].keepAll = true;
    }
    if (in.op == OpCode::VectorQuantize) {
      vqIndexOf[i] = int32_t(numVQ++);
      values[size_t(in.results[1])].keepAll = true; // old codes for cutoff
    }
    if (in.op == OpCode::Pool)
      values[size_t(in.operands[0])].keepAll = true;
  }
  lastUse[size_t(program.outputValue)] = int64_t(program.instrs.size());
  enforceCachePlan();
  findCertificates();
}

void Session::Impl::findCertificates() {
  certificateOf.assign(program.instrs.size(), -1);
  std::vector<int64_t> producer(program.values.size(), -1),
      uses(program.values.size(), 0);
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    for (int32_t v : program.instrs[i].operands)
      ++uses[size_t(v)];
    for (int32_t r : program.instrs[i].results)
      producer[size_t(r)] = int64_t(i);
  }
  ++uses[size_t(program.outputValue)];
  for (size_t q = 0; q < program.instrs.size(); ++q) {
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
    certificateOf[size_t(p)] = int32_t(certificates.size());
    certificates.push_back(std::move(c));
  }
}

double Session::Impl::rowBudget(const Certificate &c, const float *x,
                                double aNorm) const {
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
    if (!std::isfinite(second))
      continue; // a single code never flips
    double gap = std::sqrt(double(second)) * (1.0 - eta) -
                 std::sqrt(double(best)) * (1.0 + eta);
    margin = std::min(margin, gap);
  }
  double rho =
      double(c.inWidth + 2) * u * 1.01 * (c.frobenius * aNorm + c.biasNorm);
  return margin / 2.01 - rho;
}

/// Keeps every row of each value whose clean rows some user reads after an
/// edit: the same rule as the compiler's cache planning, applied here so a
/// program with a wrong or missing plan still updates correctly.
void Session::Impl::enforceCachePlan() {
  // Change sources: 0 = edited tokens, 1 = shifted positions, then one per
  // attention, VQ and pool instruction.
  std::vector<Rows> sources(program.values.size());
  sources[size_t(program.tokenValue)] = {0};
  int64_t nextSource = 2;
  auto isSubset = [](const Rows &a, const Rows &b) {
    return std::includes(b.begin(), b.end(), a.begin(), a.end());
  };
  for (const Instr &in : program.instrs) {
    Rows result;
    switch (in.op) {
    case OpCode::Attention:
    case OpCode::VectorQuantize:
    case OpCode::Pool:
      result = {nextSource++};
      break;
    default:
      for (int32_t v : in.operands)
        result = unite(result, sources[size_t(v)]);
      if (in.op == OpCode::AddLearnedPositions || in.op == OpCode::Embed)
        result = unite(result, in.op == OpCode::Embed ? Rows{0} : Rows{1});
      break;
    }
    for (int32_t r : in.results)
      sources[size_t(r)] = result;
    bool tokenLocal = in.op != OpCode::Attention &&
                      in.op != OpCode::VectorQuantize && in.op != OpCode::Pool;
    if (!tokenLocal)
      continue;
    for (int32_t v : in.operands)
      if (!isSubset(result, sources[size_t(v)]))
        values[size_t(v)].keepAll = true;
  }
}

std::vector<float> Session::Impl::gather(int32_t id, const Rows &rows) const {
  const ValueStore &v = values[size_t(id)];
  std::vector<float> out(rows.size() * size_t(v.width));
  for (size_t i = 0; i < rows.size(); ++i) {
    const float *src = v.row(rows[i]);
    std::memcpy(out.data() + i * size_t(v.width), src,
                sizeof(float) * size_t(v.width));
  }
  return out;
}

void Session::Impl::storeRows(int32_t id, const Rows &rows,
                              std::vector<float> &&computed,
                              const EditPlan *plan) {
  ValueStore &v = values[size_t(id)];
  size_t w = size_t(v.width);
  if (!v.perToken) {
    v.data = std::move(computed);
    return;
  }
  if (!v.keepAll) {
    v.data = std::move(computed);
    v.rows = rows;
    v.slotOf.assign(tokens.size(), -1);
    for (size_t i = 0; i < rows.size(); ++i)
      v.slotOf[size_t(rows[i])] = int32_t(i);
    return;
  }
  v.data.resize(tokens.size() * w);
  for (size_t i = 0; i < rows.size(); ++i) {
    float *dst = v.data.data() + size_t(rows[i]) * w;
    if (v.needsStash && plan) {
      int64_t old = plan->from[size_t(rows[i])];
      if (old >= 0 && !v.stash.count(old))
        v.stash.emplace(old, std::vector<float>(dst, dst + w));
    }
    std::memcpy(dst, computed.data() + i * w, sizeof(float) * w);
  }
}

void Session::Impl::remapKept(const EditPlan &plan) {
  size_t n = plan.tokens.size();
  bool identity =
      !plan.lengthChanged && plan.shifted.empty() && plan.removed.empty();
  for (ValueStore &v : values) {
    v.stash.clear();
    if (!v.perToken || !v.keepAll || v.data.empty() || identity)
      continue;
    size_t w = size_t(v.width);
    if (v.needsStash)
      for (int64_t r : plan.removed)
        v.stash.emplace(r, std::vector<float>(v.data.begin() + r * w,
                                              v.data.begin() + (r + 1) * w));
    std::vector<float> next(n * w, 0.0f);
    for (size_t i = 0; i < n; ++i)
      if (plan.from[i] >= 0)
        std::memcpy(next.data() + i * w,
                    v.data.data() + size_t(plan.from[i]) * w,
                    sizeof(float) * w);
    v.data = std::move(next);
  }
  if (!identity) {
    for (size_t i = 0; i < program.instrs.size(); ++i)
      if (program.instrs[i].op == OpCode::Attention)
        attention[i].remap(plan.from);
    for (Certificate &c : certificates) {
      auto remapRows = [&](std::vector<double> &v) {
        std::vector<double> next(n, -INFINITY);
        for (size_t i = 0; i < n; ++i)
          if (plan.from[i] >= 0 && size_t(plan.from[i]) < v.size())
            next[i] = v[size_t(plan.from[i])];
        v = std::move(next);
      };
      remapRows(c.budget);
      remapRows(c.refNorm);
    }
  }
}

Session::Impl::Snapshot Session::Impl::snapshot() const {
  Snapshot s{tokens, stats, {}, {}};
  for (const Certificate &c : certificates) {
    s.budgets.push_back(c.budget);
    s.refNorms.push_back(c.refNorm);
  }
  return s;
}

void Session::Impl::restore(Snapshot &&before) {
  tokens = std::move(before.tokens);
  for (ValueStore &v : values) {
    v.data.clear();
    v.rows.clear();
    v.slotOf.clear();
    v.stash.clear();
  }
  // The old tokens were evaluated before, so this run stays in the contract;
  // exactness makes its cached values and accumulators those of before.
  run(nullptr);
  for (size_t i = 0; i < certificates.size(); ++i) {
    certificates[i].budget = std::move(before.budgets[i]);
    certificates[i].refNorm = std::move(before.refNorms[i]);
  }
  stats = std::move(before.stats);
}

void Session::Impl::vqStep(size_t index, const EditPlan *plan,
                           std::vector<Rows> &dirty) {
  const Instr &in = program.instrs[index];
  const Weight &cb = program.weights[size_t(in.weights[0])];
  int64_t G = cb.shape[0], K = cb.shape[1];
  int32_t input = in.operands[0], out = in.results[0], codes = in.results[1];
  const Rows &rows = dirty[size_t(input)];
  int64_t width = values[size_t(input)].width;
  std::vector<float> x = gather(input, rows);
  checkFinite(program, index, x.data(), int64_t(x.size()));
  std::vector<float> quantized(x.size()), newCodes(rows.size() * size_t(G));
  kernels::vectorQuantize(
      x.data(), int64_t(rows.size()), width, cb.ptr(), G, K, quantized.data(),
      newCodes.data(),
      poolFor(double(rows.size()) * double(K) * double(width)));
  stats.macs += uint64_t(rows.size()) * uint64_t(K) * uint64_t(width);

  // Rows whose codes flipped (or that are new) stay dirty.
  Rows flipped;
  std::vector<float> flippedRows;
  const ValueStore &oldCodes = values[size_t(codes)];
  for (size_t i = 0; i < rows.size(); ++i) {
    int64_t r = rows[i];
    bool changed = !plan || plan->from[size_t(r)] < 0 ||
                   oldCodes.data.size() < size_t((r + 1) * G) ||
                   std::memcmp(oldCodes.data.data() + r * G,
                               newCodes.data() + i * size_t(G),
                               sizeof(float) * size_t(G)) != 0;
    if (!changed)
      continue;
    flipped.push_back(r);
    flippedRows.insert(flippedRows.end(), quantized.begin() + i * width,
                       quantized.begin() + (i + 1) * width);
  }
  if (plan)
    stats.codeFlips[size_t(vqIndexOf[index])] = int64_t(flipped.size());
  for (Certificate &c : certificates) {
    if (c.vq != index)
      continue;
    for (size_t i = 0; i < rows.size(); ++i) {
      int64_t r = rows[i];
      double aNorm = c.linear == SIZE_MAX ? 0.0 : c.refNorm[size_t(r)];
      c.budget[size_t(r)] =
          useCertificates ? rowBudget(c, x.data() + i * size_t(width), aNorm)
                          : -INFINITY;
    }
  }
  storeRows(codes, rows, std::move(newCodes), plan);
  storeRows(out, flipped, std::move(flippedRows), plan);
  dirty[size_t(out)] = flipped;
  dirty[size_t(codes)] = std::move(flipped);
}

void Session::Impl::attentionStep(size_t index, const EditPlan *plan,
                                  std::vector<Rows> &dirty) {
  const Instr &in = program.instrs[index];
  exact::AttentionShape shape = attentionShape(program, in);
  int64_t n = int64_t(tokens.size()), qw = shape.queryWidth(),
          kvw = shape.kvWidth(), hd = shape.headDim;
  const ValueStore &q = values[size_t(in.operands[0])];
  const ValueStore &k = values[size_t(in.operands[1])];
  const ValueStore &v = values[size_t(in.operands[2])];
  exact::AttentionState &state = attention[index];
  int32_t layer = layerOf[index];
  bool rope = shape.ropeTheta != 0.0f;

  Rows queryRows = dirty[size_t(in.operands[0])];
  Rows keyRows =
      unite(dirty[size_t(in.operands[1])], dirty[size_t(in.operands[2])]);
  if (plan && rope) {
    queryRows = unite(queryRows, plan->shifted);
    keyRows = unite(keyRows, plan->shifted);
  }

  if (!plan) {
    // From scratch: every row.
    std::vector<float> outRows(size_t(n * qw));
    if (!exact::attention(q.data.data(), k.data.data(), v.data.data(), n, shape,
                          outRows.data(), state, &pool))
      throwAttentionBreach(program, index, v.data.data(), n * kvw,
                           shape.valueBound);
    stats.macs +=
        2 * uint64_t(shape.causal ? n * (n + 1) / 2 : n * n) * uint64_t(qw);
    storeRows(in.results[0], allRows(n), std::move(outRows), plan);
    dirty[size_t(in.results[0])] = allRows(n);
    return;
  }

  // Old terms to subtract (deleted keys, changed keys) and new ones to add.
  struct Term {
    int64_t position; ///< in old coordinates for old terms, new for new
    std::vector<float> kRot, v;
  };
  std::vector<Term> oldTerms, newTerms;
  auto oldRow = [&](const ValueStore &store, int64_t r) -> const float * {
    auto it = store.stash.find(r);
    if (it != store.stash.end())
      return it->second.data();
    return store.row(plan->to[size_t(r)]);
  };
  auto makeTerm = [&](int64_t position, const float *kRow, const float *vRow) {
    Term t;
    t.position = position;
    t.kRot.assign(kRow, kRow + kvw);
    exact::rotateRow(t.kRot.data(), shape.numKvHeads, hd, shape.ropeTheta,
                     position);
    t.v.assign(vRow, vRow + kvw);
    return t;
  };
  for (int64_t r : plan->removed)
    oldTerms.push_back(makeTerm(r, oldRow(k, r), oldRow(v, r)));
  for (int64_t j : keyRows) {
    int64_t r = plan->from[size_t(j)];
    if (r >= 0)
      oldTerms.push_back(makeTerm(r, oldRow(k, r), oldRow(v, r)));
    if (!exact::withinBound(v.row(j), kvw, shape.valueBound))
      throwBreach(program, index, Breach::AttentionValue);
    newTerms.push_back(makeTerm(j, k.row(j), v.row(j)));
  }
  // Rows that keep their query and attend to a changed key get delta
  // updates; a row whose canonical shift moves is recomputed.
  std::vector<char> full(size_t(n), 0), updated(size_t(n), 0);
  for (int64_t i : queryRows)
    full[size_t(i)] = 1;
  std::vector<uint64_t> termCounts(size_t(n), 0);
  auto attends = [&](const Term &t, int64_t rowPos) {
    return !shape.causal || t.position <= rowPos;
  };
  // Candidate rows: kept rows with an unchanged query that attend to some
  // changed key, handled kTermBlock at a time.
  std::vector<int64_t> candidates;
  if (!oldTerms.empty() || !newTerms.empty())
    for (int64_t i = 0; i < n; ++i) {
      if (full[size_t(i)])
        continue;
      int64_t oldPos = plan->from[size_t(i)];
      if (oldPos < 0) { // a new row always has a new query
        full[size_t(i)] = 1;
        continue;
      }
      bool touched = false;
      for (const Term &t : oldTerms)
        touched = touched || attends(t, oldPos);
      for (const Term &t : newTerms)
        touched = touched || attends(t, i);
      if (touched)
        candidates.push_back(i);
    }
  constexpr int B = exact::kTermBlock;
  int64_t numBlocks = (int64_t(candidates.size()) + B - 1) / B;
  parallelFor(
      poolFor(double(candidates.size()) *
              double(oldTerms.size() + newTerms.size()) * double(qw)),
      numBlocks, [&](int64_t blockIndex) {
        int64_t rows[B], oldPos[B];
        bool ok[B], use[B];
        std::vector<float> qT(size_t(qw * B), 0.0f);
        std::vector<float> qRot(static_cast<size_t>(qw));
        for (int l = 0; l < B; ++l) {
          size_t c = size_t(blockIndex * B + l);
          ok[l] = c < candidates.size();
          rows[l] = ok[l] ? candidates[c] : 0;
          oldPos[l] = ok[l] ? plan->from[size_t(rows[l])] : 0;
          if (!ok[l])
            continue;
          std::copy(q.row(rows[l]), q.row(rows[l]) + qw, qRot.begin());
          exact::rotateRow(qRot.data(), shape.numHeads, hd, shape.ropeTheta,
                           rows[l]);
          for (int64_t c2 = 0; c2 < qw; ++c2)
            qT[size_t(c2 * B + l)] = qRot[size_t(c2)];
        }
        bool valid[B];
        for (int l = 0; l < B; ++l)
          valid[l] = ok[l];
        // With a certificate, keep the old outputs to measure how far they
        // move.
        Certificate *cert = certificateOf[index] >= 0
                                ? &certificates[size_t(certificateOf[index])]
                                : nullptr;
        std::vector<float> oldOut;
        if (cert) {
          oldOut.assign(size_t(B * qw), 0.0f);
          for (int l = 0; l < B; ++l)
            if (valid[l])
              exact::finishRow(shape, state, rows[l], oldOut.data() + l * qw);
        }
        auto apply = [&](const Term &t, int sign, bool oldTerm) {
          bool any = false;
          for (int l = 0; l < B; ++l) {
            use[l] =
                valid[l] && ok[l] && attends(t, oldTerm ? oldPos[l] : rows[l]);
            any = any || use[l];
            termCounts[size_t(rows[l])] += use[l];
          }
          if (any)
            exact::applyTermToBlock(qT.data(), rows, use, t.kRot.data(),
                                    t.v.data(), shape, state, sign, ok);
        };
        for (const Term &t : oldTerms)
          apply(t, -1, true);
        for (const Term &t : newTerms)
          apply(t, +1, false);
        std::vector<float> newOut(cert ? size_t(qw) : 0);
        for (int l = 0; l < B; ++l) {
          if (!valid[l])
            continue;
          int64_t r = rows[l];
          if (!ok[l]) {
            full[size_t(r)] = 2; // the canonical shift moved: recompute
            continue;
          }
          updated[size_t(r)] = 1;
          if (!cert || !std::isfinite(cert->budget[size_t(r)]))
            continue;
          exact::finishRow(shape, state, r, newOut.data());
          double diff = 0, norm = 0;
          for (int64_t c = 0; c < qw; ++c) {
            double a = newOut[size_t(c)], b = oldOut[size_t(l * qw + c)];
            diff += (a - b) * (a - b);
            norm += a * a;
          }
          const double u = std::ldexp(1.0, -24);
          double drift = cert->normBound * std::sqrt(diff) * (1.0 + 1e-6);
          double rho =
              cert->linear == SIZE_MAX
                  ? 0.0
                  : double(cert->inWidth + 2) * u * 1.01 *
                        (cert->frobenius * std::sqrt(norm) + cert->biasNorm);
          if (drift + rho <= cert->budget[size_t(r)]) {
            cert->budget[size_t(r)] -= drift;
            updated[size_t(r)] = 3; // certified: the codes cannot change
          }
        }
      });
  for (uint64_t count : termCounts)
    stats.macs += count * 2 * uint64_t(qw);

  Rows fullRows;
  for (int64_t i = 0; i < n; ++i)
    if (full[size_t(i)])
      fullRows.push_back(i);
  std::vector<float> fullOut(fullRows.size() * size_t(qw));
  if (!fullRows.empty()) {
    std::vector<float> kRot(k.data.begin(), k.data.begin() + n * kvw);
    if (rope)
      exact::rotateRows(k.data.data(), n, shape.numKvHeads, hd, shape.ropeTheta,
                        kRot.data(), poolFor(double(n * kvw)));
    exact::KeyPanel panel;
    if (!panel.build(kRot.data(), v.data.data(), n, shape,
                     poolFor(double(n * kvw))))
      throwBreach(program, index, Breach::AttentionValue);
    std::atomic<bool> scoresOk{true};
    parallelFor(
        poolFor(double(fullRows.size()) * double(n) * double(qw)),
        int64_t(fullRows.size()), [&](int64_t t) {
          int64_t i = fullRows[size_t(t)];
          std::vector<float> qRot(q.row(i), q.row(i) + qw);
          exact::rotateRow(qRot.data(), shape.numHeads, hd, shape.ropeTheta, i);
          if (!exact::computeRow(qRot.data(), panel, shape.causal ? i + 1 : n,
                                 shape, state, i, fullOut.data() + t * qw))
            scoresOk.store(false, std::memory_order_relaxed);
        });
    if (!scoresOk.load())
      throwBreach(program, index, Breach::AttentionScore);
    for (int64_t i : fullRows)
      stats.macs += 2 * uint64_t(shape.causal ? i + 1 : n) * uint64_t(qw);
  }

  // The refreshed output rows, in order.
  std::vector<float> outRows;
  Rows outDirty;
  int64_t numUpdated = 0;
  size_t nextFull = 0;
  int64_t numCertified = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!full[size_t(i)] && updated[size_t(i)] == 3) {
      ++numUpdated;
      ++numCertified;
      continue; // not dirty downstream
    }
    if (!full[size_t(i)] && !updated[size_t(i)])
      continue;
    outDirty.push_back(i);
    size_t at = outRows.size();
    outRows.resize(at + size_t(qw));
    if (full[size_t(i)]) {
      std::memcpy(outRows.data() + at, fullOut.data() + nextFull++ * qw,
                  sizeof(float) * size_t(qw));
    } else {
      exact::finishRow(shape, state, i, outRows.data() + at);
      ++numUpdated;
    }
  }
  stats.dirtyRows[size_t(layer)] = int64_t(fullRows.size());
  stats.updatedRows[size_t(layer)] = numUpdated;
  stats.certifiedRows += numCertified;
  storeRows(in.results[0], outDirty, std::move(outRows), plan);
  dirty[size_t(in.results[0])] = std::move(outDirty);
}

void Session::Impl::step(size_t index, const EditPlan *plan,
                         std::vector<Rows> &dirty) {
  const Instr &in = program.instrs[index];
  int64_t n = int64_t(tokens.size());
  switch (in.op) {
  case OpCode::Attention:
    attentionStep(index, plan, dirty);
    return;
  case OpCode::VectorQuantize:
    vqStep(index, plan, dirty);
    return;
  case OpCode::Pool: {
    const Rows &rows = dirty[size_t(in.operands[0])];
    Rows &out = dirty[size_t(in.results[0])];
    out.clear();
    if (rows.empty() && plan && !plan->lengthChanged)
      return;
    const ValueStore &x = values[size_t(in.operands[0])];
    for (int64_t r : rows)
      checkFinite(program, index, x.row(r), x.width);
    std::vector<float> pooled(size_t(x.width));
    if (in.attrs.pool == PoolKind::Mean)
      kernels::poolMean(x.data.data(), n, x.width, pooled.data());
    else
      kernels::poolLast(x.data.data(), n, x.width, pooled.data());
    storeRows(in.results[0], {0}, std::move(pooled), plan);
    out = {0};
    return;
  }
  default:
    break;
  }

  // Token-local: the union of the operands' dirty rows.
  const ValueInfo &result = program.values[size_t(in.results[0])];
  Rows rows;
  if (in.op == OpCode::Embed) {
    rows = plan ? plan->edited : allRows(n);
  } else {
    for (int32_t v : in.operands)
      rows = unite(rows, dirty[size_t(v)]);
    if (in.op == OpCode::AddLearnedPositions && plan)
      rows = unite(rows, plan->shifted);
  }
  Rows &out = dirty[size_t(in.results[0])];
  if (!result.perToken) {
    out.clear();
    if (rows.empty())
      return;
    rows = {0};
  }
  out = rows;
  if (rows.empty()) {
    storeRows(in.results[0], rows, {}, plan);
    return;
  }
  int64_t m = int64_t(rows.size());
  std::vector<std::vector<float>> inputs;
  std::vector<const float *> inputPtrs;
  for (int32_t v : in.operands) {
    if (in.op == OpCode::Embed)
      break;
    inputs.push_back(program.values[size_t(v)].perToken
                         ? gather(v, rows)
                         : values[size_t(v)].data);
    inputPtrs.push_back(inputs.back().data());
  }
  std::vector<int32_t> rowTokens;
  if (in.op == OpCode::Embed)
    for (int64_t r : rows)
      rowTokens.push_back(tokens[size_t(r)]);
  std::vector<float> computed(size_t(m * result.width));
  runRows(program, in, &packed[index], inputPtrs.data(), m, rowTokens.data(),
          rows.data(), computed.data(),
          poolFor(double(m) * double(result.width) *
                  double(in.op == OpCode::Linear
                             ? program.values[size_t(in.operands[0])].width
                             : 1)));
  stats.macs += rowMacs(program, in, m);
  for (Certificate &c : certificates) {
    if (c.linear != index)
      continue;
    int64_t w = program.values[size_t(in.operands[0])].width;
    for (int64_t i = 0; i < m; ++i) {
      double norm = 0;
      for (int64_t k = 0; k < w; ++k)
        norm +=
            double(inputPtrs[0][i * w + k]) * double(inputPtrs[0][i * w + k]);
      c.refNorm[size_t(rows[size_t(i)])] = std::sqrt(norm);
    }
  }
  storeRows(in.results[0], rows, std::move(computed), plan);
}

void Session::Impl::run(const EditPlan *plan) {
  std::vector<Rows> dirty(program.values.size());
  int64_t n = int64_t(tokens.size());
  dirty[size_t(program.tokenValue)] = plan ? plan->edited : allRows(n);
  stats.macs = 0;
  stats.dirtyRows.assign(size_t(numLayers), plan ? 0 : n);
  stats.updatedRows.assign(size_t(numLayers), 0);
  stats.codeFlips.assign(size_t(numVQ), plan ? 0 : n);
  stats.certifiedRows = 0;
  for (Certificate &c : certificates)
    if (!plan || c.budget.size() != size_t(n)) {
      c.budget.assign(size_t(n), -INFINITY);
      c.refNorm.assign(size_t(n), 0.0);
    }
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    step(i, plan, dirty);
    // Partial stores are only needed within an update.
    for (int32_t v : program.instrs[i].operands) {
      ValueStore &store = values[size_t(v)];
      if (lastUse[size_t(v)] == int64_t(i) && store.perToken &&
          !store.keepAll) {
        store.data = {};
        store.rows.clear();
        store.slotOf = {};
      }
    }
  }
  for (ValueStore &v : values)
    v.stash.clear();
  const std::vector<float> &out = values[size_t(program.outputValue)].data;
  checkFinite(program, program.instrs.size(), out.data(), int64_t(out.size()));
  stats.macsFull = countMacs(program, n);
  stats.numTokens = n;
}

Session::Session(const Program &program, SessionOptions options)
    : impl(std::make_unique<Impl>(program, options)) {
  impl->setup();
}

Session::~Session() = default;

Status Session::reset(const std::vector<int32_t> &tokens) {
  if (Status st = validateTokens(impl->program, tokens); !st.ok())
    return st;
  auto start = std::chrono::steady_clock::now();
  std::optional<Impl::Snapshot> before;
  try {
    if (impl->valid)
      before = impl->snapshot();
    impl->tokens = tokens;
    for (ValueStore &v : impl->values) {
      v.data.clear();
      v.rows.clear();
      v.slotOf.clear();
    }
    impl->run(nullptr);
    impl->valid = true;
  } catch (const ContractBreach &e) {
    if (before) {
      impl->restore(std::move(*before));
    } else {
      impl->tokens.clear();
      for (ValueStore &v : impl->values)
        v.data.clear();
    }
    return Status::breach(e.what());
  } catch (const std::bad_alloc &) {
    impl->valid = false;
    return Status::failure("out of memory evaluating the document");
  }
  impl->stats.micros = std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  return Status::success();
}

Status Session::apply(const std::vector<TokenEdit> &edits) {
  if (!impl->valid)
    return Status::failure("the session has no document: call reset first");
  EditPlan plan;
  if (Status st = planEdits(impl->program, impl->tokens, edits, plan); !st.ok())
    return st;
  auto start = std::chrono::steady_clock::now();
  std::optional<Impl::Snapshot> before;
  try {
    before = impl->snapshot();
    impl->tokens = plan.tokens;
    impl->remapKept(plan);
    impl->run(&plan);
  } catch (const ContractBreach &e) {
    impl->restore(std::move(*before));
    return Status::breach(e.what());
  } catch (const std::bad_alloc &) {
    impl->valid = false;
    return Status::failure("out of memory updating the document; the session "
                           "must be reset");
  }
  impl->stats.micros = std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  return Status::success();
}

const std::vector<float> &Session::output() const {
  return impl->values[size_t(impl->program.outputValue)].data;
}

const std::vector<int32_t> &Session::tokens() const { return impl->tokens; }

const EditStats &Session::stats() const { return impl->stats; }

int64_t Session::cacheBytes() const {
  int64_t bytes = 0;
  for (const ValueStore &v : impl->values)
    if (v.perToken && v.keepAll)
      bytes += int64_t(v.data.size() * sizeof(float));
  for (const exact::AttentionState &s : impl->attention)
    bytes += s.numRows * s.bytesPerRow();
  return bytes;
}

int64_t Session::numLayers() const { return impl->numLayers; }
int64_t Session::numVQ() const { return impl->numVQ; }
const Program &Session::program() const { return impl->program; }

} // namespace incnn::runtime
