//===- AttentionUpdate.cpp - the attention_update step --------------------===//
//
// inputs = {query rows, key/value rows}. From scratch every row is computed
// with exact::attention. After an edit, rows whose query changed (and new
// rows) are recomputed in full; every other row that attends to a changed,
// inserted or deleted key gets delta updates of its exact accumulators (old
// terms subtracted, new ones added, kTermBlock rows at a time). A row whose
// canonical shift moves is recomputed. Rows whose output moved too little to
// flip the codes of the VQ they feed are certified and stay clean.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "../engine/Engine.h"
#include "Steps.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>

namespace incnn::runtime {

namespace {

/// Most recomputed rows that share one pass over the keys.
constexpr int64_t kRunRows = 64;

/// One key's rotated key row and value row, at its position.
struct Term {
  int64_t position; ///< in old coordinates for old terms, new for new
  std::vector<float> kRot;
  std::vector<double> v; ///< widened once for every row it reaches
};

} // namespace

/// A delta term costs about this many times one (row, key) pair of the
/// blocked from-scratch kernels (measured: ~1.5 vs ~10 G pairs/s).
constexpr double kDeltaTermCost = 4.0;

/// Recomputes every row of the attention of step `s` from scratch (the
/// blocked kernels), storing the rows in `full` or `candidates` as dirty.
void recomputeLayer(Engine &e, const Step &s,
                    const exact::AttentionShape &shape,
                    const std::vector<char> &full,
                    const std::vector<int64_t> &candidates) {
  const Program &p = e.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  int64_t n = e.numTokens(), qw = shape.queryWidth();
  std::vector<float> qs, ks, vs, out(size_t(n * qw));
  const std::vector<float> &q = e.logical(in.operands[0], qs),
                           &k = e.logical(in.operands[1], ks),
                           &v = e.logical(in.operands[2], vs);
  exact::AttentionState fresh;
  if (!exact::attention(q.data(), k.data(), v.data(), n, shape, out.data(),
                        fresh, &e.pool))
    throwAttentionBreach(p, index, v.data(), n * shape.kvWidth(),
                         shape.valueBound);
  exact::AttentionState &state = e.attention[index];
  for (int64_t i = 0; i < n; ++i)
    state.copyRow(fresh, i, e.slots.slotOf[size_t(i)]);
  Rows dirty = candidates;
  for (int64_t i = 0; i < n; ++i)
    if (full[size_t(i)])
      dirty.push_back(i);
  std::sort(dirty.begin(), dirty.end());
  std::vector<float> rows(dirty.size() * size_t(qw));
  for (size_t t = 0; t < dirty.size(); ++t)
    std::copy_n(out.data() + dirty[t] * qw, qw, rows.data() + t * qw);
  e.stats.macs += 2 * exact::attendedPairs(shape, n) * uint64_t(qw);
  e.stats.dirtyRows[size_t(e.layerOf[index])] = int64_t(dirty.size());
  e.stats.recomputedRows = unite(e.stats.recomputedRows, dirty);
  e.storeRows(in.results[0], dirty, std::move(rows));
  e.rowSets[size_t(s.output)] = std::move(dirty);
}

void runAttentionUpdate(Engine &e, const Step &s) {
  const Program &p = e.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  exact::AttentionShape shape = attentionShape(p, in);
  int64_t n = e.numTokens(), qw = shape.queryWidth(), kvw = shape.kvWidth(),
          hd = shape.headDim;
  const ValueStore &q = e.values[size_t(in.operands[0])];
  const ValueStore &k = e.values[size_t(in.operands[1])];
  const ValueStore &v = e.values[size_t(in.operands[2])];
  exact::AttentionState &state = e.attention[index];
  int32_t layer = e.layerOf[index];
  const EditPlan *plan = e.plan;
  Rows &outDirty = e.rowSets[size_t(s.output)];

  if (!plan) {
    Rows every = allRows(n);
    std::vector<float> scratch;
    bool direct = false;
    float *out = e.destination(in.results[0], every, scratch, direct);
    if (!exact::attention(q.data.data(), k.data.data(), v.data.data(), n, shape,
                          out, state, &e.pool))
      throwAttentionBreach(p, index, v.data.data(), n * kvw, shape.valueBound);
    e.stats.macs += 2 * exact::attendedPairs(shape, n) * uint64_t(qw);
    if (!direct)
      e.storeRows(in.results[0], every, std::move(scratch));
    outDirty = std::move(every);
    return;
  }

  const Rows &queryRows = e.rowSets[size_t(s.inputs[0])];
  const Rows &keyRows = e.rowSets[size_t(s.inputs[1])];
  std::vector<Term> oldTerms, newTerms;
  auto oldRow = [&](const ValueStore &store, int64_t r) {
    return e.oldRow(store, r);
  };
  const std::vector<int32_t> &slotOf = e.slots.slotOf; // state rows
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
      throwBreach(p, index, Breach::AttentionValue);
    newTerms.push_back(makeTerm(j, k.row(j), v.row(j)));
  }
  // Rows that keep their query and attend to a changed key get delta
  // updates; a row whose canonical shift moves is recomputed.
  std::vector<char> full(size_t(n), 0), updated(size_t(n), 0);
  for (int64_t i : queryRows)
    full[size_t(i)] = 1;
  std::vector<uint64_t> termCounts(size_t(n), 0);
  // Row `row` attends key `key` (positions in one coordinate system).
  int64_t W = shape.window, oldN = int64_t(plan->to.size());
  auto inWindow = [&](int64_t key, int64_t row) {
    if (shape.causal && key > row)
      return false;
    return W == 0 || (row - key < W && key - row < W);
  };
  auto attends = [&](const Term &t, int64_t rowPos) {
    return inWindow(t.position, rowPos);
  };
  // With a window, a kept row near an insertion or deletion also gains and
  // loses unchanged keys at its window's edges: terms of its own.
  std::unordered_map<int64_t, std::vector<std::pair<int, Term>>> edgeTerms;
  std::vector<char> reach(W > 0 ? size_t(n) : 0, 0); // rows a term may reach
  if (W > 0) {
    auto mark = [&](int64_t lo, int64_t hi) {
      for (int64_t i = std::max<int64_t>(lo, 0); i <= std::min(hi, n - 1); ++i)
        reach[size_t(i)] = 1;
    };
    auto rowsOfKey = [&](int64_t key) { // new rows whose window holds `key`
      mark(shape.causal ? key : key - W + 1, key + W - 1);
    };
    for (const Term &t : newTerms)
      rowsOfKey(t.position);
    for (const Term &t : oldTerms) // old rows, mapped to their new rows
      for (int64_t o = std::max<int64_t>(0, shape.causal ? t.position
                                                         : t.position - W + 1);
           o <= std::min(oldN - 1, t.position + W - 1); ++o)
        if (plan->to[size_t(o)] >= 0)
          reach[size_t(plan->to[size_t(o)])] = 1;
    std::vector<char> changedKey(size_t(n), 0);
    for (int64_t j : keyRows)
      changedKey[size_t(j)] = 1;
    std::vector<char> nearEdit(size_t(n), 0);
    for (int64_t i = 0; i <= n; ++i) {
      bool edge = i < n ? plan->from[size_t(i)] < 0 ||
                              plan->from[size_t(i)] !=
                                  (i ? plan->from[size_t(i - 1)] + 1 : 0)
                        : n > 0 && plan->from[size_t(n - 1)] != oldN - 1;
      if (edge)
        for (int64_t r = std::max<int64_t>(0, shape.causal ? i : i - W + 1);
             r <= std::min(n - 1, i + W - 1); ++r)
          nearEdit[size_t(r)] = 1;
    }
    for (int64_t i = 0; i < n; ++i) {
      int64_t o = plan->from[size_t(i)];
      if (!nearEdit[size_t(i)] || o < 0 || full[size_t(i)])
        continue;
      std::vector<std::pair<int, Term>> terms;
      for (int64_t j = std::max<int64_t>(0, i - W + 1);
           j <= (shape.causal ? i : std::min(n - 1, i + W - 1)); ++j) {
        int64_t jo = plan->from[size_t(j)];
        if (jo >= 0 && !changedKey[size_t(j)] && !inWindow(jo, o))
          terms.emplace_back(+1, makeTerm(j, k.row(j), v.row(j)));
      }
      for (int64_t jo = std::max<int64_t>(0, o - W + 1);
           jo <= (shape.causal ? o : std::min(oldN - 1, o + W - 1)); ++jo) {
        int64_t j = plan->to[size_t(jo)];
        if (j >= 0 && !changedKey[size_t(j)] && !inWindow(j, i))
          terms.emplace_back(-1, makeTerm(jo, oldRow(k, jo), oldRow(v, jo)));
      }
      if (!terms.empty()) {
        edgeTerms.emplace(i, std::move(terms));
        reach[size_t(i)] = 1;
      }
    }
  }
  // Candidate rows: kept rows with an unchanged query that attend to some
  // changed key, handled kTermBlock at a time.
  std::vector<int64_t> candidates;
  if (!oldTerms.empty() || !newTerms.empty() || !edgeTerms.empty())
    for (int64_t i = 0; i < n; ++i) {
      if (full[size_t(i)])
        continue;
      int64_t oldPos = plan->from[size_t(i)];
      if (oldPos < 0) { // a new row always has a new query
        full[size_t(i)] = 1;
        continue;
      }
      if (W > 0 && !reach[size_t(i)])
        continue;
      bool touched = edgeTerms.count(i) > 0;
      for (const Term &t : oldTerms)
        touched = touched || attends(t, oldPos);
      for (const Term &t : newTerms)
        touched = touched || attends(t, i);
      if (touched)
        candidates.push_back(i);
    }
  // When the delta work would cost more than recomputing every row (an edit
  // near the start of a long document, say), recompute the layer: the same
  // bits, with the rows the update would touch marked dirty.
  {
    uint64_t terms = oldTerms.size() + newTerms.size(), edge = 0, fullKeys = 0;
    for (const auto &[row, rowTerms] : edgeTerms)
      edge += rowTerms.size();
    for (int64_t i = 0; i < n; ++i)
      if (full[size_t(i)]) {
        int64_t begin, end;
        exact::keyRange(shape, i, n, begin, end);
        fullKeys += uint64_t(end - begin);
      }
    double delta = kDeltaTermCost * double(candidates.size() * terms + edge) +
                   double(fullKeys);
    if (delta > double(exact::attendedPairs(shape, n))) {
      recomputeLayer(e, s, shape, full, candidates);
      return;
    }
  }
  Certificate *cert = e.certificates.ofAttention(index);
  constexpr int B = exact::kTermBlock;
  int64_t numBlocks = (int64_t(candidates.size()) + B - 1) / B;
  parallelFor(
      e.poolFor(double(candidates.size()) *
                double(oldTerms.size() + newTerms.size()) * double(qw)),
      numBlocks, [&](int64_t blockIndex) {
        int64_t rows[B], oldPos[B], stateRows[B];
        bool ok[B], valid[B];
        std::vector<float> qT(size_t(qw * B), 0.0f);
        std::vector<float> qRot(static_cast<size_t>(qw));
        for (int l = 0; l < B; ++l) {
          size_t c = size_t(blockIndex * B + l);
          ok[l] = c < candidates.size();
          rows[l] = ok[l] ? candidates[c] : 0;
          stateRows[l] = slotOf[size_t(rows[l])];
          oldPos[l] = ok[l] ? plan->from[size_t(rows[l])] : 0;
          valid[l] = ok[l];
          if (!ok[l])
            continue;
          std::copy(q.row(rows[l]), q.row(rows[l]) + qw, qRot.begin());
          exact::rotateRow(qRot.data(), shape.numHeads, hd, shape.ropeTheta,
                           rows[l]);
          for (int64_t c2 = 0; c2 < qw; ++c2)
            qT[size_t(c2 * B + l)] = qRot[size_t(c2)];
        }
        // With a certificate, keep the old outputs to measure the move.
        std::vector<float> oldOut;
        if (cert) {
          oldOut.assign(size_t(B * qw), 0.0f);
          for (int l = 0; l < B; ++l)
            if (valid[l])
              exact::finishRow(shape, state, stateRows[l],
                               oldOut.data() + l * qw);
        }
        // Every term that reaches a row of the block, old ones first, in one
        // pass over the block's accumulators.
        size_t numTerms = oldTerms.size() + newTerms.size();
        for (int l = 0; l < B; ++l)
          if (valid[l])
            if (auto it = edgeTerms.find(rows[l]); it != edgeTerms.end())
              numTerms += it->second.size();
        std::unique_ptr<bool[]> use(new bool[numTerms * B]);
        std::vector<exact::TermRef> refs;
        refs.reserve(numTerms);
        auto addTerm = [&](const Term &t, int sign, bool oldTerm) {
          bool *mask = use.get() + refs.size() * B;
          bool any = false;
          for (int l = 0; l < B; ++l) {
            mask[l] = valid[l] && attends(t, oldTerm ? oldPos[l] : rows[l]);
            any = any || mask[l];
            termCounts[size_t(rows[l])] += mask[l];
          }
          if (any)
            refs.push_back({t.kRot.data(), t.v.data(), sign});
        };
        for (const Term &t : oldTerms)
          addTerm(t, -1, true);
        for (const Term &t : newTerms)
          addTerm(t, +1, false);
        for (int l = 0; l < B; ++l) { // a row's own edge terms: its lane only
          auto it = valid[l] ? edgeTerms.find(rows[l]) : edgeTerms.end();
          if (it == edgeTerms.end())
            continue;
          for (const auto &[sign, t] : it->second) {
            bool *mask = use.get() + refs.size() * B;
            std::fill(mask, mask + B, false);
            mask[l] = true;
            termCounts[size_t(rows[l])] += 1;
            refs.push_back({t.kRot.data(), t.v.data(), sign});
          }
        }
        if (!refs.empty())
          exact::applyTermsToBlock(qT.data(), stateRows, use.get(), refs.data(),
                                   int64_t(refs.size()), shape, state, ok);
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
          exact::finishRow(shape, state, stateRows[l], newOut.data());
          if (e.certificates.certify(*cert, r, newOut.data(),
                                     oldOut.data() + l * qw, qw))
            updated[size_t(r)] = 3; // certified: the codes cannot change
        }
      });
  for (uint64_t count : termCounts)
    e.stats.macs += count * 2 * uint64_t(qw);

  Rows fullRows;
  for (int64_t i = 0; i < n; ++i)
    if (full[size_t(i)])
      fullRows.push_back(i);
  std::vector<float> fullOut(fullRows.size() * size_t(qw));
  if (!fullRows.empty()) {
    // Recomputed rows read the keys and values where they are stored, in
    // runs of consecutive rows (causal) that share one pass over the keys.
    std::vector<const float *> kPtrs(static_cast<size_t>(n)),
        vPtrs(static_cast<size_t>(n));
    std::vector<float> kScratch, kRot;
    if (shape.ropeTheta != 0.0f) {
      kRot.resize(size_t(n * kvw));
      exact::rotateRows(e.logical(in.operands[1], kScratch).data(), n,
                        shape.numKvHeads, hd, shape.ropeTheta, kRot.data(),
                        e.poolFor(double(n * kvw)));
    }
    for (int64_t j = 0; j < n; ++j) {
      kPtrs[size_t(j)] = kRot.empty() ? k.row(j) : kRot.data() + j * kvw;
      vPtrs[size_t(j)] = v.row(j);
    }
    std::vector<std::pair<size_t, size_t>> runs; // [begin, end) of fullRows
    for (size_t t = 0; t < fullRows.size();) {
      size_t u = t + 1;
      while (u < fullRows.size() && u - t < size_t(kRunRows) &&
             (!(shape.causal || W > 0) || fullRows[u] == fullRows[u - 1] + 1))
        ++u;
      runs.emplace_back(t, u);
      t = u;
    }
    std::atomic<bool> scoresOk{true};
    int64_t H = shape.numHeads;
    parallelFor(
        e.poolFor(double(fullRows.size()) * double(n) * double(qw)),
        int64_t(runs.size()), [&](int64_t r) {
          auto [begin, end] = runs[size_t(r)];
          std::vector<int64_t> rows(fullRows.begin() + int64_t(begin),
                                    fullRows.begin() + int64_t(end));
          std::vector<float> qRot(rows.size() * size_t(qw));
          for (size_t t = 0; t < rows.size(); ++t) {
            std::copy(q.row(rows[t]), q.row(rows[t]) + qw,
                      qRot.begin() + int64_t(t) * qw);
            exact::rotateRow(qRot.data() + t * qw, H, hd, shape.ropeTheta,
                             rows[t]);
          }
          exact::AttentionState computed;
          computed.resize(int64_t(rows.size()), H, hd);
          if (!exact::computeRowsFromRows(qRot.data(), rows, n, kPtrs.data(),
                                          vPtrs.data(), shape, computed,
                                          fullOut.data() + begin * qw)) {
            scoresOk.store(false, std::memory_order_relaxed);
            return;
          }
          for (size_t t = 0; t < rows.size(); ++t)
            state.copyRow(computed, int64_t(t), slotOf[size_t(rows[t])]);
        });
    if (!scoresOk.load()) {
      for (int64_t j = 0; j < n; ++j)
        if (!exact::withinBound(vPtrs[size_t(j)], kvw, shape.valueBound))
          throwBreach(p, index, Breach::AttentionValue);
      throwBreach(p, index, Breach::AttentionScore);
    }
    for (int64_t i : fullRows) {
      int64_t begin, end;
      exact::keyRange(shape, i, n, begin, end);
      e.stats.macs += 2 * uint64_t(end - begin) * uint64_t(qw);
    }
  }

  // The refreshed output rows, in order.
  std::vector<float> outRows;
  Rows dirty;
  int64_t numUpdated = 0, numCertified = 0;
  size_t nextFull = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!full[size_t(i)] && updated[size_t(i)] == 3) {
      ++numUpdated;
      ++numCertified;
      continue; // not dirty downstream
    }
    if (!full[size_t(i)] && !updated[size_t(i)])
      continue;
    dirty.push_back(i);
    size_t at = outRows.size();
    outRows.resize(at + size_t(qw));
    if (full[size_t(i)]) {
      std::memcpy(outRows.data() + at, fullOut.data() + nextFull++ * qw,
                  sizeof(float) * size_t(qw));
    } else {
      exact::finishRow(shape, state, slotOf[size_t(i)], outRows.data() + at);
      ++numUpdated;
    }
  }
  e.stats.dirtyRows[size_t(layer)] = int64_t(fullRows.size());
  e.stats.recomputedRows = unite(e.stats.recomputedRows, fullRows);
  e.stats.updatedRows[size_t(layer)] = numUpdated;
  e.stats.certifiedRows += numCertified;
  e.storeRows(in.results[0], dirty, std::move(outRows));
  outDirty = std::move(dirty);
}

static bool attentionUpdateUpdates(const Program &, const Instr &in) {
  return in.op == OpCode::Attention;
}

static void attentionUpdateCacheNeeds(const Program &p, const Step &s,
                                      CacheNeeds &needs) {
  for (int32_t v : p.instrs[size_t(s.instr)].operands)
    needs.keep(v, "reads at every row");
}

const StepRules kAttentionUpdateStep = {
    attentionUpdateUpdates, attentionUpdateCacheNeeds, runAttentionUpdate};

} // namespace incnn::runtime
