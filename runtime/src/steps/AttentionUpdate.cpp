//===- AttentionUpdate.cpp - the attention_update step --------------------===//
//
// Change rule. inputs = {query rows, key/value rows}. From scratch every row
// is computed with exact::attention. After an edit:
//  - rows whose query changed, and new rows, are recomputed in full (over
//    their distinct keys, with counts, where keys and values are rows of
//    computed tables and so repeat, without a window);
//  - every other row that attends to a changed, inserted or deleted key gets
//    delta updates of its exact accumulators (old terms subtracted, new ones
//    added, kTermBlock rows at a time); with a window, a kept row near an
//    insertion or deletion also gains and loses unchanged keys at its
//    window's edges (edge terms of its own);
//  - a row whose canonical shift moves is recomputed;
//  - when the delta work would cost more than recomputing every row, the
//    layer is recomputed instead (the same bits);
//  - rows whose output moved too little to flip the codes of the VQ they
//    feed are certified and stay clean.
//
// runAttentionUpdate runs the phases in this order: plan the terms and rows
// (planDelta), choose between the delta work and a layer recompute
// (deltaCostsMore, recomputeLayer), apply the delta terms (applyDeltaTerms),
// recompute the full rows (recomputeFullRows), then finish the refreshed rows
// and the stats (finishRows).
//
//===----------------------------------------------------------------------===//
#include "AttentionStep.h"
#include "Steps.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

namespace incnn::runtime {

namespace {

/// Most recomputed rows that share one pass over the keys.
constexpr int64_t kRunRows = 64;

/// Full rows go over their distinct keys when there are at most 1/this as
/// many as keys (a distinct key costs about what a pass's key does, and the
/// grouping a few nanoseconds per key).
constexpr int64_t kRepeatedKeysGain = 3;

/// A delta term costs about this many times one (row, key) pair of the
/// blocked from-scratch kernels (measured: ~1.5 vs ~10 G pairs/s).
constexpr double kDeltaTermCost = 4.0;

/// Recomputes every row of the attention of step `s` from scratch (the
/// blocked kernels), storing the rows in `full` or `candidates` as dirty.
void recomputeLayer(const AttentionStep &a, const std::vector<char> &full,
                    const std::vector<int64_t> &candidates) {
  StepContext &ctx = a.ctx;
  const Step &s = a.s;
  const exact::AttentionShape &shape = a.shape;
  const Program &p = ctx.program;
  size_t index = a.index;
  const Instr &in = a.in;
  int64_t n = ctx.numTokens(), qw = shape.queryWidth();
  std::vector<float> qs, ks, vs, out(size_t(n * qw));
  const std::vector<float> &q = ctx.logical(in.operands[0], qs),
                           &k = ctx.logical(in.operands[1], ks),
                           &v = ctx.logical(in.operands[2], vs);
  exact::AttentionState fresh;
  if (!exact::attention(q.data(), k.data(), v.data(), n, shape, out.data(),
                        fresh, &ctx.pool(), ctx.checkpoint))
    throwAttentionBreach(p, index, v.data(), n * shape.kvWidth(),
                         shape.valueBound);
  exact::AttentionState &state = ctx.attention(index);
  for (int64_t i = 0; i < n; ++i)
    state.copyRow(fresh, i, ctx.slotOf()[size_t(i)]);
  if (Certificate *c = ctx.certificates.ofAttention(index)) {
    c->settleAll(); // every row exact again
    for (int64_t i = 0; i < n; ++i)
      recordOutputNorms(a, *c, i, out.data() + i * qw);
  }
  Rows dirty = candidates;
  for (int64_t i = 0; i < n; ++i)
    if (full[size_t(i)])
      dirty.push_back(i);
  std::sort(dirty.begin(), dirty.end());
  std::vector<float> rows(dirty.size() * size_t(qw));
  for (size_t t = 0; t < dirty.size(); ++t)
    std::copy_n(out.data() + dirty[t] * qw, qw, rows.data() + t * qw);
  ctx.stats.macs += 2 * exact::attendedPairs(shape, n) * uint64_t(qw);
  a.countRewritten(n);
  ctx.dirtyRowsOf(index) = int64_t(dirty.size());
  ctx.stats.recomputedRows = unite(ctx.stats.recomputedRows, dirty);
  ctx.storeRows(in.results[0], dirty, std::move(rows));
  ctx.rowSet(s.output) = std::move(dirty);
}

/// From scratch: every row with the blocked kernels.
void computeAllRows(const AttentionStep &a) {
  StepContext &ctx = a.ctx;
  Rows every = allRows(a.n);
  std::vector<float> scratch;
  bool direct = false;
  float *out = ctx.destination(a.in.results[0], every, scratch, direct);
  if (!exact::attention(a.q.data.data(), a.k.data.data(), a.v.data.data(), a.n,
                        a.shape, out, a.state, &ctx.pool(), ctx.checkpoint))
    throwAttentionBreach(a.p, a.index, a.v.data.data(), a.n * a.kvw,
                         a.shape.valueBound);
  ctx.stats.macs += 2 * exact::attendedPairs(a.shape, a.n) * uint64_t(a.qw);
  a.countRewritten(a.n);
  if (Certificate *c = ctx.certificates.ofAttention(a.index)) {
    coverAllValues(a, *c);
    for (int64_t i = 0; i < a.n; ++i)
      recordOutputNorms(a, *c, i, out + i * a.qw);
  }
  if (!direct)
    ctx.storeRows(a.in.results[0], every, std::move(scratch));
  ctx.rowSet(a.s.output) = std::move(every);
}

/// The terms of the changed keys: removed keys and the old versions of
/// changed ones (old terms), the changed keys now (new terms).
void collectTerms(const AttentionStep &a, const EditPlan &plan,
                  const Rows &keyRows, DeltaPlan &d) {
  for (int64_t r : plan.removed)
    d.oldTerms.push_back(a.makeTerm(r, a.oldRow(a.k, r), a.oldRow(a.v, r)));
  for (int64_t j : keyRows) {
    int64_t r = plan.from[size_t(j)];
    if (r >= 0)
      d.oldTerms.push_back(a.makeTerm(r, a.oldRow(a.k, r), a.oldRow(a.v, r)));
    if (!exact::withinBound(a.v.row(j), a.kvw, a.shape.valueBound))
      throwBreach(a.p, a.index, Breach::AttentionValue);
    d.newTerms.push_back(a.makeTerm(j, a.k.row(j), a.v.row(j)));
  }
}

/// Windows: marks the rows whose window holds the key of a term (old terms'
/// rows mapped to their new rows).
void markReach(const AttentionStep &a, const EditPlan &plan, DeltaPlan &d) {
  int64_t n = a.n, W = a.shape.window, oldN = int64_t(plan.to.size());
  bool causal = a.shape.causal;
  for (const Term &t : d.newTerms) // new rows whose window holds the key
    for (int64_t i =
             std::max<int64_t>(causal ? t.position : t.position - W + 1, 0);
         i <= std::min(t.position + W - 1, n - 1); ++i)
      d.reach[size_t(i)] = 1;
  for (const Term &t : d.oldTerms)
    for (int64_t o =
             std::max<int64_t>(0, causal ? t.position : t.position - W + 1);
         o <= std::min(oldN - 1, t.position + W - 1); ++o)
      if (plan.to[size_t(o)] >= 0)
        d.reach[size_t(plan.to[size_t(o)])] = 1;
}

/// Windows: rows within the window of an insertion or deletion (a row
/// whose predecessor is not its old predecessor, or the end).
std::vector<char> rowsNearEdits(const AttentionStep &a, const EditPlan &plan) {
  int64_t n = a.n, W = a.shape.window, oldN = int64_t(plan.to.size());
  std::vector<char> nearEdit(size_t(n), 0);
  for (int64_t i = 0; i <= n; ++i) {
    bool edge = i < n ? plan.from[size_t(i)] < 0 ||
                            plan.from[size_t(i)] !=
                                (i ? plan.from[size_t(i - 1)] + 1 : 0)
                      : n > 0 && plan.from[size_t(n - 1)] != oldN - 1;
    if (edge)
      for (int64_t r = std::max<int64_t>(0, a.shape.causal ? i : i - W + 1);
           r <= std::min(n - 1, i + W - 1); ++r)
        nearEdit[size_t(r)] = 1;
  }
  return nearEdit;
}

/// Windows: the edge terms of kept row i (old row o): unchanged keys its
/// window gained (+1) and lost (-1).
std::vector<std::pair<int, Term>>
edgeTermsOf(const AttentionStep &a, const EditPlan &plan,
            const std::vector<char> &changedKey, int64_t i, int64_t o) {
  int64_t n = a.n, W = a.shape.window, oldN = int64_t(plan.to.size());
  bool causal = a.shape.causal;
  std::vector<std::pair<int, Term>> terms;
  for (int64_t j = std::max<int64_t>(0, i - W + 1);
       j <= (causal ? i : std::min(n - 1, i + W - 1)); ++j) {
    int64_t jo = plan.from[size_t(j)];
    if (jo >= 0 && !changedKey[size_t(j)] && !a.inWindow(jo, o))
      terms.emplace_back(+1, a.makeTerm(j, a.k.row(j), a.v.row(j)));
  }
  for (int64_t jo = std::max<int64_t>(0, o - W + 1);
       jo <= (causal ? o : std::min(oldN - 1, o + W - 1)); ++jo) {
    int64_t j = plan.to[size_t(jo)];
    if (j >= 0 && !changedKey[size_t(j)] && !a.inWindow(j, i))
      terms.emplace_back(-1,
                         a.makeTerm(jo, a.oldRow(a.k, jo), a.oldRow(a.v, jo)));
  }
  return terms;
}

/// Windows: the rows terms may reach, and the edge terms of kept rows near
/// an insertion or deletion.
void collectEdgeTerms(const AttentionStep &a, const EditPlan &plan,
                      const Rows &keyRows, DeltaPlan &d) {
  d.reach.assign(size_t(a.n), 0);
  markReach(a, plan, d);
  std::vector<char> changedKey(size_t(a.n), 0);
  for (int64_t j : keyRows)
    changedKey[size_t(j)] = 1;
  std::vector<char> nearEdit = rowsNearEdits(a, plan);
  for (int64_t i = 0; i < a.n; ++i) {
    int64_t o = plan.from[size_t(i)];
    if (!nearEdit[size_t(i)] || o < 0 || d.full[size_t(i)])
      continue;
    std::vector<std::pair<int, Term>> terms =
        edgeTermsOf(a, plan, changedKey, i, o);
    if (!terms.empty()) {
      d.edgeTerms.emplace(i, std::move(terms));
      d.reach[size_t(i)] = 1;
    }
  }
}

/// Rows [0, size) that attend to the key at position p: a difference array,
/// `cover`[lo] + 1 and [hi + 1] - 1 for its interval.
void coverKey(const exact::AttentionShape &shape, int64_t p, int64_t size,
              std::vector<int32_t> &cover) {
  int64_t W = shape.window;
  int64_t lo = shape.causal ? p : W > 0 ? p - W + 1 : 0;
  int64_t hi = W > 0 ? std::min(p + W - 1, size - 1) : size - 1;
  lo = std::max<int64_t>(lo, 0);
  if (lo <= hi) {
    ++cover[size_t(lo)];
    --cover[size_t(hi + 1)];
  }
}

/// Candidate rows: kept rows with an unchanged query that attend to some
/// changed key (or have edge terms). New rows become full rows.
void selectCandidates(const AttentionStep &a, const EditPlan &plan,
                      DeltaPlan &d) {
  if (d.oldTerms.empty() && d.newTerms.empty() && d.edgeTerms.empty())
    return;
  // The rows each term reaches are an interval of new rows (new terms) or
  // of old rows (old terms): one pass over the rows instead of a pass over
  // the terms per row.
  int64_t oldN = int64_t(plan.to.size());
  std::vector<int32_t> newCover(size_t(a.n) + 1, 0),
      oldCover(size_t(oldN) + 1, 0);
  for (const Term &t : d.newTerms)
    coverKey(a.shape, t.position, a.n, newCover);
  for (const Term &t : d.oldTerms)
    coverKey(a.shape, t.position, oldN, oldCover);
  for (int64_t o = 1; o < oldN; ++o)
    oldCover[size_t(o)] += oldCover[size_t(o - 1)];
  int32_t reached = 0; // new terms whose interval holds row i
  for (int64_t i = 0; i < a.n; ++i) {
    reached += newCover[size_t(i)];
    if (d.full[size_t(i)])
      continue;
    int64_t oldPos = plan.from[size_t(i)];
    if (oldPos < 0) { // a new row always has a new query
      d.full[size_t(i)] = 1;
      continue;
    }
    if (a.shape.window > 0 && !d.reach[size_t(i)])
      continue;
    if (reached > 0 || oldCover[size_t(oldPos)] > 0 || d.edgeTerms.count(i))
      d.candidates.push_back(i);
  }
}

/// Plans the update of an edit: its terms, full rows and candidates.
DeltaPlan planDelta(const AttentionStep &a, const EditPlan &plan) {
  const Rows &queryRows = a.ctx.rowSet(a.s.inputs[0]);
  const Rows &keyRows = a.ctx.rowSet(a.s.inputs[1]);
  DeltaPlan d;
  collectTerms(a, plan, keyRows, d);
  d.full.assign(size_t(a.n), 0);
  d.updated.assign(size_t(a.n), 0);
  for (int64_t i : queryRows)
    d.full[size_t(i)] = 1;
  if (a.shape.window > 0)
    collectEdgeTerms(a, plan, keyRows, d);
  selectCandidates(a, plan, d);
  return d;
}

/// True when the delta work would cost more than recomputing every row (an
/// edit near the start of a long document, say).
bool deltaCostsMore(const AttentionStep &a, const DeltaPlan &d) {
  uint64_t terms = d.oldTerms.size() + d.newTerms.size(), edge = 0,
           fullKeys = 0;
  for (const auto &[row, rowTerms] : d.edgeTerms)
    edge += rowTerms.size();
  if (const Certificate *c = a.ctx.certificates.ofAttention(a.index))
    for (int64_t i : d.candidates) // stale rows catch up first
      edge += c->pending[size_t(i)].size();
  for (int64_t i = 0; i < a.n; ++i)
    if (d.full[size_t(i)]) {
      int64_t begin, end;
      exact::keyRange(a.shape, i, a.n, begin, end);
      fullKeys += uint64_t(end - begin);
    }
  double delta = kDeltaTermCost * double(d.candidates.size() * terms + edge) +
                 double(fullKeys);
  return delta > double(exact::attendedPairs(a.shape, a.n));
}

constexpr int kBlock = exact::kTermBlock;
/// Blocks per task of the delta work (64 rows: a cache line of row flags).
constexpr int64_t kTaskBlocks = 8;

/// Up to kBlock candidate rows updated together; lane l is row rows[l].
struct Block {
  int64_t rows[kBlock], oldPos[kBlock], stateRows[kBlock];
  bool ok[kBlock], valid[kBlock];
  std::vector<float> qT;       ///< rotated queries, transposed [qw][kBlock]
  std::vector<float> oldOut;   ///< with a certificate: outputs before
  std::unique_ptr<bool[]> use; ///< [term][kBlock]: the term reaches the lane
  size_t useCapacity = 0;
  std::vector<exact::TermRef> refs;
  /// The runs of refs that are consecutive old or new terms, whose keys
  /// the update transposed once.
  exact::SharedTerms shared[2];
  int numShared = 0;
  uint64_t caughtUp = 0; ///< deferred (row, term) pairs applied first
  /// Scratch rows reused by the blocks of one task.
  std::vector<float> qRot, syncOut, newOut, zeroRow;
};

/// Block `blockIndex` of the candidates: its rows, their rotated queries
/// and, with a certificate, their outputs before the update.
void loadBlock(const AttentionStep &a, const EditPlan &plan, const DeltaPlan &d,
               int64_t blockIndex, Certificate *cert, Block &b) {
  b.qT.resize(size_t(a.qw * kBlock));
  b.qRot.resize(a.shape.ropeTheta != 0.0f ? size_t(kBlock * a.qw) : 0);
  b.zeroRow.resize(size_t(a.qw), 0.0f);
  const float *queries[kBlock];
  for (int l = 0; l < kBlock; ++l) {
    size_t c = size_t(blockIndex * kBlock + l);
    b.ok[l] = c < d.candidates.size();
    b.rows[l] = b.ok[l] ? d.candidates[c] : 0;
    b.stateRows[l] = a.slotOf[size_t(b.rows[l])];
    b.oldPos[l] = b.ok[l] ? plan.from[size_t(b.rows[l])] : 0;
    b.valid[l] = b.ok[l];
    queries[l] = b.zeroRow.data();
    if (!b.ok[l])
      continue;
    queries[l] = a.q.row(b.rows[l]);
    if (a.shape.ropeTheta != 0.0f) {
      float *rotated = b.qRot.data() + l * a.qw;
      std::copy(queries[l], queries[l] + a.qw, rotated);
      exact::rotateRow(rotated, a.shape.numHeads, a.hd, a.shape.ropeTheta,
                       b.rows[l]);
      queries[l] = rotated;
    }
  }
  exact::transposeBlockRows(queries, a.qw, b.qT.data());
  if (!cert)
    return;
  // Stale rows: their outputs when they went stale, then their pending terms.
  bool stale[kBlock];
  std::vector<float> &syncOut = b.syncOut;
  syncOut.resize(size_t(kBlock * a.qw));
  for (int l = 0; l < kBlock; ++l) {
    stale[l] = b.valid[l] && cert->stale(b.rows[l]);
    if (stale[l])
      exact::finishRow(a.shape, a.state, b.stateRows[l],
                       syncOut.data() + l * a.qw);
  }
  b.caughtUp =
      catchUpBlock(a, *cert, b.qT.data(), b.rows, b.stateRows, b.valid, b.ok);
  // The outputs before the edit's terms, to measure their move; a row that
  // caught up gets the budget its measured move leaves.
  b.oldOut.resize(size_t(kBlock * a.qw));
  for (int l = 0; l < kBlock; ++l) {
    if (!b.valid[l])
      continue;
    exact::finishRow(a.shape, a.state, b.stateRows[l],
                     b.oldOut.data() + l * a.qw);
    if (stale[l] && b.ok[l])
      a.ctx.certificates.refresh(*cert, b.rows[l], b.oldOut.data() + l * a.qw,
                                 syncOut.data() + l * a.qw, a.qw);
  }
}

/// Every term that reaches a row of the block, old ones first, then each
/// row's own edge terms (its lane only). Returns the (row, term) pairs.
uint64_t gatherBlockTerms(const AttentionStep &a, const DeltaPlan &d,
                          const exact::TermKeys (&keysT)[2], Block &b) {
  size_t numTerms = d.oldTerms.size() + d.newTerms.size();
  for (int l = 0; l < kBlock; ++l)
    if (b.valid[l])
      if (auto it = d.edgeTerms.find(b.rows[l]); it != d.edgeTerms.end())
        numTerms += it->second.size();
  if (b.useCapacity < numTerms * kBlock) {
    b.useCapacity = numTerms * kBlock;
    b.use.reset(new bool[b.useCapacity]);
  }
  b.refs.clear();
  b.refs.reserve(numTerms);
  uint64_t counts[kBlock] = {};
  auto addTerm = [&](const Term &t, int sign, bool oldTerm) {
    bool *mask = b.use.get() + b.refs.size() * kBlock;
    bool any = false;
    for (int l = 0; l < kBlock; ++l) {
      mask[l] = b.valid[l] &&
                a.inWindow(t.position, oldTerm ? b.oldPos[l] : b.rows[l]);
      any = any || mask[l];
      counts[l] += mask[l];
    }
    if (any)
      b.refs.push_back({t.kRot.data(), t.v.data(), sign});
  };
  // Each list's terms that the block takes, when they are consecutive.
  b.numShared = 0;
  auto addList = [&](const std::vector<Term> &list, int sign, bool oldTerms,
                     const exact::TermKeys &keys) {
    int64_t at = int64_t(b.refs.size()), first = -1, last = -1;
    bool consecutive = true;
    for (size_t i = 0; i < list.size(); ++i) {
      size_t before = b.refs.size();
      addTerm(list[i], sign, oldTerms);
      if (b.refs.size() == before)
        continue;
      consecutive = consecutive && (first < 0 || last + 1 == int64_t(i));
      first = first < 0 ? int64_t(i) : first;
      last = int64_t(i);
    }
    if (first >= 0 && consecutive && !keys.kT.empty())
      b.shared[b.numShared++] = {&keys, at, first, last - first + 1};
  };
  addList(d.oldTerms, -1, true, keysT[0]);
  addList(d.newTerms, +1, false, keysT[1]);
  for (int l = 0; l < kBlock; ++l) {
    auto it = b.valid[l] ? d.edgeTerms.find(b.rows[l]) : d.edgeTerms.end();
    if (it == d.edgeTerms.end())
      continue;
    for (const auto &[sign, t] : it->second) {
      bool *mask = b.use.get() + b.refs.size() * kBlock;
      std::fill(mask, mask + kBlock, false);
      mask[l] = true;
      counts[l] += 1;
      b.refs.push_back({t.kRot.data(), t.v.data(), sign});
    }
  }
  uint64_t pairs = 0;
  for (int l = 0; l < kBlock; ++l)
    pairs += counts[l]; // 0 on padding lanes
  return pairs;
}

/// After the terms: a lane whose shift moved becomes a full row; the others
/// are updated, and certified when their codes cannot change.
void settleBlock(const AttentionStep &a, Certificate *cert, Block &b,
                 DeltaPlan &d) {
  static_assert(kBlock <= Certificates::kMaxCertifyRows, "one call a block");
  std::vector<float> &newOut = b.newOut;
  newOut.resize(cert ? size_t(kBlock * a.qw) : 0);
  Certificates::CertifyRow rows[kBlock];
  int lanes[kBlock], count = 0;
  for (int l = 0; l < kBlock; ++l) {
    if (!b.valid[l])
      continue;
    int64_t r = b.rows[l];
    if (!b.ok[l]) {
      d.full[size_t(r)] = 2; // the canonical shift moved: recompute
      continue;
    }
    d.updated[size_t(r)] = 1;
    if (!cert)
      continue;
    if (!cert->certifiable(r, b.stateRows[l])) {
      recordOutputNorms(a, *cert, r, nullptr); // finished later, not kept
      continue;
    }
    float *out = newOut.data() + l * a.qw;
    exact::finishRow(a.shape, a.state, b.stateRows[l], out);
    recordOutputNorms(a, *cert, r, out);
    rows[count] = {r, b.stateRows[l], out, b.oldOut.data() + l * a.qw};
    lanes[count++] = l;
  }
  bool certified[kBlock];
  if (count > 0)
    a.ctx.certificates.certifyRows(*cert, rows, count, a.qw, certified);
  for (int i = 0; i < count; ++i)
    if (certified[i])
      d.updated[size_t(b.rows[lanes[i]])] = 3; // the codes cannot change
}

/// How many blocks ahead a task starts loading the next rows' queries and
/// accumulators (from memory, they are the update's first touch).
constexpr int64_t kPrefetchBlocks = 2;

/// Starts loading the queries and accumulators of block `blockIndex`.
void prefetchBlock(const AttentionStep &a, const DeltaPlan &d,
                   int64_t blockIndex) {
  constexpr size_t kLine = 64;
  int64_t H = a.shape.numHeads;
  size_t numerBytes = size_t(H * a.hd) * sizeof(int64_t);
  size_t queryBytes = size_t(a.qw) * sizeof(float);
  for (size_t c = size_t(blockIndex * kBlock);
       c < std::min(d.candidates.size(), size_t((blockIndex + 1) * kBlock));
       ++c) {
    int64_t r = d.candidates[c];
    size_t slot = size_t(a.slotOf[size_t(r)]);
    const char *numer = reinterpret_cast<const char *>(a.state.numer.data() +
                                                       slot * size_t(H * a.hd));
    for (size_t o = 0; o < numerBytes; o += kLine)
      __builtin_prefetch(numer + o);
    __builtin_prefetch(a.state.denom.data() + slot * size_t(H));
    __builtin_prefetch(a.state.shift.data() + slot * size_t(H));
    __builtin_prefetch(a.state.top.data() + slot * size_t(H));
    const char *query = reinterpret_cast<const char *>(a.q.row(r));
    for (size_t o = 0; o < queryBytes; o += kLine)
      __builtin_prefetch(query + o);
  }
}

/// Delta-updates the candidates, kBlock rows at a time, in one pass over
/// each block's accumulators.
void applyDeltaTerms(const AttentionStep &a, const EditPlan &plan,
                     DeltaPlan &d) {
  StepContext &ctx = a.ctx;
  Certificate *cert = ctx.certificates.ofAttention(a.index);
  std::atomic<uint64_t> pairs{0}, caughtUp{0};
  int64_t numBlocks = (int64_t(d.candidates.size()) + kBlock - 1) / kBlock;
  // A task takes kTaskBlocks consecutive blocks, so that the per-row flags
  // and counts two threads write never share a cache line.
  int64_t numTasks = (numBlocks + kTaskBlocks - 1) / kTaskBlocks;
  // The changed keys transposed once, for the blocks that take them.
  exact::TermKeys keysT[2];
  for (int list = 0; list < 2; ++list) {
    const std::vector<Term> &terms = list == 0 ? d.oldTerms : d.newTerms;
    std::vector<exact::TermRef> refs;
    for (const Term &t : terms)
      refs.push_back({t.kRot.data(), nullptr, 1});
    exact::transposeTermKeys(refs.data(), int64_t(refs.size()), a.shape,
                             keysT[list]);
  }
  parallelFor(
      ctx.poolFor(double(d.candidates.size()) *
                  double(d.oldTerms.size() + d.newTerms.size()) * double(a.qw)),
      numTasks, [&](int64_t task) {
        Block b;
        int64_t first = task * kTaskBlocks,
                end = std::min(numBlocks, (task + 1) * kTaskBlocks);
        for (int64_t ahead = first;
             ahead < std::min(end, first + kPrefetchBlocks); ++ahead)
          prefetchBlock(a, d, ahead);
        for (int64_t blockIndex = first; blockIndex < end; ++blockIndex) {
          if (blockIndex + kPrefetchBlocks < end) // not another task's rows
            prefetchBlock(a, d, blockIndex + kPrefetchBlocks);
          loadBlock(a, plan, d, blockIndex, cert, b);
          pairs.fetch_add(gatherBlockTerms(a, d, keysT, b),
                          std::memory_order_relaxed);
          if (!b.refs.empty())
            exact::applyTermsToBlock(b.qT.data(), b.stateRows, b.use.get(),
                                     b.refs.data(), int64_t(b.refs.size()),
                                     a.shape, a.state, b.ok, b.shared,
                                     b.numShared);
          settleBlock(a, cert, b, d);
          caughtUp.fetch_add(b.caughtUp, std::memory_order_relaxed);
        }
      });
  ctx.stats.macs += (pairs.load() + caughtUp.load()) * 2 * uint64_t(a.qw);
  a.countRewritten(int64_t(d.candidates.size()));
  if (cert) // stale candidates caught up (or will be recomputed)
    for (int64_t i : d.candidates)
      if (cert->stale(i))
        cert->settle(i);
}

/// f(j) for every key row j, in chunks shared by the pool's threads on long
/// documents (looking up where a row is stored takes a few dependent loads).
template <class F> void forEachKey(const AttentionStep &a, F f) {
  constexpr int64_t kChunk = 2048;
  forRowChunks(a.n, kChunk, a.n > kChunk ? &a.ctx.pool() : nullptr, f);
}

/// Every key row (rotated) and value row where it is stored.
void keyValueRows(const AttentionStep &a, std::vector<const float *> &kPtrs,
                  std::vector<const float *> &vPtrs, std::vector<float> &kRot) {
  int64_t n = a.n, kvw = a.kvw;
  kPtrs.resize(static_cast<size_t>(n));
  vPtrs.resize(static_cast<size_t>(n));
  std::vector<float> kScratch;
  if (a.shape.ropeTheta != 0.0f) {
    kRot.resize(size_t(n * kvw));
    exact::rotateRows(a.ctx.logical(a.in.operands[1], kScratch).data(), n,
                      a.shape.numKvHeads, a.hd, a.shape.ropeTheta, kRot.data(),
                      a.ctx.poolFor(double(n * kvw)));
  }
  forEachKey(a, [&](int64_t j) {
    kPtrs[size_t(j)] = kRot.empty() ? a.k.row(j) : kRot.data() + j * kvw;
    vPtrs[size_t(j)] = a.v.row(j);
  });
}

/// [begin, end) ranges of `fullRows` computed together (one pass over their
/// keys): up to kRunRows rows, with a window less than a window apart.
std::vector<std::pair<size_t, size_t>> runsOf(const AttentionStep &a,
                                              const Rows &fullRows) {
  int64_t W = a.shape.window;
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t t = 0; t < fullRows.size();) {
    size_t u = t + 1;
    while (u < fullRows.size() && u - t < size_t(kRunRows) &&
           (W == 0 || fullRows[u] - fullRows[t] < W))
      ++u;
    runs.emplace_back(t, u);
    t = u;
  }
  return runs;
}

/// Per key row: its table row when its key and value are both that row of
/// tables of one key (without rotary embedding, every row of that key has
/// the same key and value bits), or -1 for a key of its own (a row this
/// update computed). Empty with a window (a window's few keys repeat
/// little, and its rows share passes already), or when too few keys repeat
/// to pay for grouping them.
std::vector<int32_t> repeatedKeyGroups(const AttentionStep &a) {
  const ValueStore &k = a.k, &v = a.v;
  if (a.shape.window > 0 || a.shape.ropeTheta != 0.0f || !k.table || !v.table ||
      k.tableByToken != v.tableByToken || k.tableCodes != v.tableCodes ||
      k.tableRows != v.tableRows)
    return {};
  std::vector<int32_t> groups(size_t(a.n));
  forEachKey(a, [&](int64_t j) {
    bool fromTables = k.slotOfRow(j) < 0 && v.slotOfRow(j) < 0;
    groups[size_t(j)] = fromTables ? int32_t(k.tableIndexOf(j)) : -1;
  });
  std::vector<char> seen(size_t(k.tableRows), 0);
  int64_t distinct = 0;
  for (int32_t group : groups) {
    distinct += group < 0 || !seen[size_t(group)];
    if (group >= 0)
      seen[size_t(group)] = 1;
  }
  if (distinct * kRepeatedKeysGain > a.n)
    return {};
  return groups;
}

/// The distinct keys of full rows (rows ascending, without a window: every
/// row's keys are a prefix, all of them if bidirectional, so each row's
/// distinct keys start the next one's list), in first occurrence order,
/// and their counts over a growing prefix of the keys.
struct DistinctKeys {
  std::vector<const float *> kRows, vRows;
  std::vector<int32_t> at;      ///< table row -> its key, or -1
  std::vector<int32_t> running; ///< counts over keys [0, next)
  int64_t next = 0, seen = 0;   ///< keys counted; distinct keys among them

  /// The keys of the longest prefix, [0, end).
  DistinctKeys(const AttentionStep &a, int64_t end,
               const std::vector<int32_t> &groups)
      : at(size_t(a.k.tableRows), -1) {
    for (int64_t j = 0; j < end; ++j) {
      int32_t group = groups[size_t(j)];
      if (group >= 0 && at[size_t(group)] >= 0)
        continue;
      if (group >= 0) {
        at[size_t(group)] = int32_t(kRows.size());
        kRows.push_back(a.k.table + int64_t(group) * a.k.width);
        vRows.push_back(a.v.table + int64_t(group) * a.v.width);
      } else {
        kRows.push_back(a.k.row(j));
        vRows.push_back(a.v.row(j));
      }
    }
    running.assign(kRows.size(), 0);
  }

  /// Counts keys up to `end` (in the first pass's order); returns how many
  /// distinct keys the prefix has.
  int64_t countTo(int64_t end, const std::vector<int32_t> &groups) {
    for (; next < end; ++next) {
      int32_t group = groups[size_t(next)];
      int64_t d = group >= 0 ? at[size_t(group)] : seen;
      seen += d == seen;
      ++running[size_t(d)];
    }
    return seen;
  }
};

/// recomputeFullRows for keys that repeat (repeatedKeyGroups): each row
/// over its distinct keys and their counts, a batch of rows at a time (the
/// counts of a batch's rows are kept, a row of int32s each). False on a
/// score breach.
bool recomputeRowsOverRepeatedKeys(const AttentionStep &a, const Rows &fullRows,
                                   const std::vector<int32_t> &groups,
                                   std::vector<float> &fullOut) {
  std::vector<int64_t> ends(fullRows.size());
  for (size_t t = 0; t < fullRows.size(); ++t) {
    int64_t begin;
    exact::keyRange(a.shape, fullRows[t], a.n, begin, ends[t]);
  }
  DistinctKeys keys(a, ends.empty() ? 0 : ends.back(), groups);
  size_t numDistinct = keys.kRows.size();
  // Both passes read table rows scattered in memory and do a few
  // operations per float: weighed at kGroupedCost multiply-adds a float.
  constexpr double kGroupedCost = 4.0;
  // One transposed copy serves every row. This buffer and the counts' are
  // kept from one update to the next (zeroing fresh pages for them cost as
  // much as the rows' work); the tasks below read them through these
  // references, not as their own thread's.
  static thread_local std::vector<float> keysTBuffer;
  static thread_local std::vector<int32_t> countsBuffer;
  std::vector<float> &keysT = keysTBuffer;
  exact::transposeDistinctKeys(
      keys.kRows.data(), int64_t(numDistinct), a.kvw, keysT,
      a.ctx.poolFor(kGroupedCost * double(numDistinct) * double(a.kvw)));
  constexpr size_t kBatchRows = 256;
  std::vector<int32_t> &counts = countsBuffer; // [batch row][distinct key]
  std::vector<int64_t> numKeys;
  std::atomic<bool> scoresOk{true};
  uint64_t pairs = 0;
  int64_t kvHeads = a.shape.numKvHeads;
  for (size_t first = 0; first < fullRows.size(); first += kBatchRows) {
    size_t rows = std::min(kBatchRows, fullRows.size() - first);
    counts.resize(rows * numDistinct);
    numKeys.resize(rows);
    uint64_t batchPairs = 0;
    for (size_t t = 0; t < rows; ++t) {
      numKeys[t] = keys.countTo(ends[first + t], groups);
      std::copy_n(keys.running.begin(), numKeys[t],
                  counts.begin() + int64_t(t * numDistinct));
      batchPairs += uint64_t(numKeys[t]);
    }
    pairs += batchPairs;
    // A task per row and kv head: a few flipped rows still fill every thread.
    parallelFor(a.ctx.poolFor(kGroupedCost * double(batchPairs) * double(a.qw)),
                int64_t(rows) * kvHeads, [&](int64_t task) {
                  size_t t = size_t(task / kvHeads);
                  int64_t g = task % kvHeads, i = fullRows[first + t];
                  if (!exact::computeRowFromRepeatedKeys(
                          a.q.row(i), keys.vRows.data(),
                          &counts[t * numDistinct], numKeys[t], keysT.data(),
                          a.shape, a.state, a.slotOf[size_t(i)],
                          fullOut.data() + int64_t(first + t) * a.qw, g, g + 1))
                    scoresOk.store(false, std::memory_order_relaxed);
                });
  }
  a.ctx.stats.macs += 2 * pairs * uint64_t(a.qw);
  return scoresOk.load();
}

/// Throws the breach a full row's failed scores mean: a value out of its
/// bound, else a score.
[[noreturn]] void throwFullRowBreach(const AttentionStep &a) {
  for (int64_t j = 0; j < a.n; ++j)
    if (!exact::withinBound(a.v.row(j), a.kvw, a.shape.valueBound))
      throwBreach(a.p, a.index, Breach::AttentionValue);
  throwBreach(a.p, a.index, Breach::AttentionScore);
}

/// Recomputes rows `fullRows` from scratch, reading the keys and values
/// where they are stored, in runs that share one pass over the keys (or
/// over their distinct keys, where keys repeat); their outputs go to fullOut
/// in order.
void recomputeFullRows(const AttentionStep &a, const Rows &fullRows,
                       std::vector<float> &fullOut) {
  int64_t n = a.n, qw = a.qw, H = a.shape.numHeads;
  a.countRewritten(int64_t(fullRows.size()));
  if (std::vector<int32_t> groups = repeatedKeyGroups(a); !groups.empty()) {
    if (!recomputeRowsOverRepeatedKeys(a, fullRows, groups, fullOut))
      throwFullRowBreach(a);
    return;
  }
  std::vector<const float *> kPtrs, vPtrs;
  std::vector<float> kRot;
  keyValueRows(a, kPtrs, vPtrs, kRot);
  std::vector<std::pair<size_t, size_t>> runs = runsOf(a, fullRows);
  std::atomic<bool> scoresOk{true};
  ThreadPool *pool =
      a.ctx.poolFor(double(fullRows.size()) * double(n) * double(qw));
  // One run: its kv heads in parallel; several: the runs.
  ThreadPool *perRun = runs.size() == 1 ? pool : nullptr;
  parallelFor(
      runs.size() == 1 ? nullptr : pool, int64_t(runs.size()), [&](int64_t r) {
        auto [begin, end] = runs[size_t(r)];
        std::vector<int64_t> rows(fullRows.begin() + int64_t(begin),
                                  fullRows.begin() + int64_t(end));
        std::vector<float> qRot(rows.size() * size_t(qw));
        for (size_t t = 0; t < rows.size(); ++t) {
          std::copy(a.q.row(rows[t]), a.q.row(rows[t]) + qw,
                    qRot.begin() + int64_t(t) * qw);
          exact::rotateRow(qRot.data() + t * qw, H, a.hd, a.shape.ropeTheta,
                           rows[t]);
        }
        exact::AttentionState computed;
        computed.resize(int64_t(rows.size()), H, a.hd);
        if (!exact::computeRowsFromRows(qRot.data(), rows, n, kPtrs.data(),
                                        vPtrs.data(), a.shape, computed,
                                        fullOut.data() + begin * qw, perRun)) {
          scoresOk.store(false, std::memory_order_relaxed);
          return;
        }
        for (size_t t = 0; t < rows.size(); ++t)
          a.state.copyRow(computed, int64_t(t), a.slotOf[size_t(rows[t])]);
      });
  if (!scoresOk.load())
    throwFullRowBreach(a);
  for (int64_t i : fullRows) {
    int64_t begin, end;
    exact::keyRange(a.shape, i, n, begin, end);
    a.ctx.stats.macs += 2 * uint64_t(end - begin) * uint64_t(qw);
  }
}

/// Stores the refreshed output rows in order (recomputed ones from
/// fullOut, updated ones finished from their state; certified rows stay
/// clean), sets the step's dirty rows and the stats.
void finishRows(const AttentionStep &a, const DeltaPlan &d,
                const Rows &fullRows, const std::vector<float> &fullOut) {
  StepContext &ctx = a.ctx;
  int64_t qw = a.qw;
  Rows dirty;
  std::vector<int64_t> fullAt; // per dirty row: its row of fullOut, or -1
  int64_t numUpdated = 0, numCertified = 0, nextFull = 0;
  for (int64_t i = 0; i < a.n; ++i) {
    if (!d.full[size_t(i)] && d.updated[size_t(i)] == 3) {
      ++numUpdated;
      ++numCertified;
      continue; // not dirty downstream
    }
    if (!d.full[size_t(i)] && !d.updated[size_t(i)])
      continue;
    dirty.push_back(i);
    fullAt.push_back(d.full[size_t(i)] ? nextFull++ : -1);
    numUpdated += !d.full[size_t(i)];
  }
  // Finishing a row reads its integer sums: a few operations a column.
  constexpr double kFinishCost = 4.0;
  std::vector<float> outRows(dirty.size() * size_t(qw));
  forRowChunks(int64_t(dirty.size()), 64,
               ctx.poolFor(kFinishCost * double(numUpdated) * double(qw)),
               [&](int64_t t) {
                 float *out = outRows.data() + t * qw;
                 if (fullAt[size_t(t)] >= 0)
                   std::copy_n(fullOut.data() + fullAt[size_t(t)] * qw, qw,
                               out);
                 else
                   exact::finishRow(a.shape, a.state,
                                    a.slotOf[size_t(dirty[size_t(t)])], out);
               });
  ctx.dirtyRowsOf(a.index) = int64_t(fullRows.size());
  ctx.stats.recomputedRows = unite(ctx.stats.recomputedRows, fullRows);
  ctx.updatedRowsOf(a.index) = numUpdated;
  ctx.stats.certifiedRows += numCertified;
  ctx.storeRows(a.in.results[0], dirty, std::move(outRows));
  ctx.rowSet(a.s.output) = std::move(dirty);
}

/// Microseconds since the last lap (or since it was made).
struct Laps {
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double micros =
        std::chrono::duration<double, std::micro>(now - last).count();
    last = now;
    return micros;
  }
};

} // namespace

static void runAttentionUpdate(StepContext &ctx, const Step &s) {
  AttentionStep a(ctx, s);
  if (!ctx.plan()) {
    computeAllRows(a);
    return;
  }
  Laps laps;
  AttentionMicros &time = ctx.attentionMicrosOf(a.index);
  DeltaPlan d = planDelta(a, *ctx.plan());
  Certificate *cert = ctx.certificates.ofAttention(a.index);
  if (cert && cert->defer && ctx.certificates.enabled())
    deferCandidates(a, *ctx.plan(), d, *cert);
  if (deltaCostsMore(a, d)) { // the same bits, the touched rows dirty
    time.plan = laps.lap();
    recomputeLayer(a, d.full, d.candidates);
    time.fullRows = laps.lap();
    return;
  }
  time.plan = laps.lap();
  applyDeltaTerms(a, *ctx.plan(), d);
  time.deltaTerms = laps.lap();
  Rows fullRows;
  for (int64_t i = 0; i < a.n; ++i)
    if (d.full[size_t(i)])
      fullRows.push_back(i);
  std::vector<float> fullOut(fullRows.size() * size_t(a.qw));
  if (!fullRows.empty())
    recomputeFullRows(a, fullRows, fullOut);
  if (cert)
    for (size_t t = 0; t < fullRows.size(); ++t) {
      cert->settle(fullRows[t]); // recomputed: exact again
      recordOutputNorms(a, *cert, fullRows[t], fullOut.data() + t * a.qw);
    }
  finishRows(a, d, fullRows, fullOut);
  time.fullRows = laps.lap();
}

static bool attentionUpdateUpdates(const Program &, const Instr &in) {
  return in.op == OpCode::Attention;
}

static void attentionUpdateCacheNeeds(const Program &p, const Step &s,
                                      CacheNeeds &needs) {
  // Queries change at the first input's rows, keys and values at the
  // second's (whose values the step checks against the value bound).
  const std::vector<int32_t> &operands = p.instrs[size_t(s.instr)].operands;
  for (size_t k = 0; k < operands.size(); ++k) {
    needs.takesChanges(operands[k], s.inputs[k == 0 ? 0 : 1]);
    needs.keep(operands[k], "reads at every row");
  }
}

const StepRules kAttentionUpdateStep = {
    attentionUpdateUpdates, attentionUpdateCacheNeeds, runAttentionUpdate};

} // namespace incnn::runtime
