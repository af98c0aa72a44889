//===- RowOps.cpp - one instruction over a set of rows --------------------===//
#include "RowOps.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>

namespace incnn::runtime {

void throwBreach(const Program &program, size_t index, Breach what) {
  std::string where = "the output";
  if (index < program.instrs.size()) {
    const Instr &in = program.instrs[index];
    where = std::string("instruction ") + std::to_string(index) + " (" +
            opCodeName(in.op) + " -> '" +
            program.values[size_t(in.results[0])].name + "')";
  }
  std::string why;
  switch (what) {
  case Breach::AttentionScore:
    why = "an attention score is non-finite or exceeds 2^20 in magnitude";
    break;
  case Breach::AttentionValue: {
    char bound[32];
    std::snprintf(bound, sizeof(bound), "%.9g",
                  double(exact::valueBound(program.maxPositions)));
    why = std::string("an attention value is non-finite or exceeds ") + bound +
          " in magnitude (the exact bound for max_positions " +
          std::to_string(program.maxPositions) + ")";
    break;
  }
  case Breach::NonFinite:
    why = "an activation is NaN or infinite";
    break;
  case Breach::PoolInput:
    why = "a pooled activation is non-finite or exceeds 2^40 in magnitude";
    break;
  }
  throw ContractBreach("outside the exactness contract at " + where + ": " +
                       why + "; the input is refused");
}

void throwAttentionBreach(const Program &program, size_t index, const float *v,
                          int64_t count, float bound) {
  throwBreach(program, index,
              exact::withinBound(v, count, bound) ? Breach::AttentionScore
                                                  : Breach::AttentionValue);
}

void checkFinite(const Program &program, size_t index, const float *x,
                 int64_t n) {
  if (!exact::withinBound(x, n, FLT_MAX))
    throwBreach(program, index, Breach::NonFinite);
}

namespace {

std::vector<kernels::PackedLinear> pack(const Program &program,
                                        ThreadPool *pool) {
  std::vector<kernels::PackedLinear> packed(program.instrs.size());
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    const Instr &in = program.instrs[i];
    if (in.op != OpCode::Linear)
      continue;
    const Weight &w = program.weights[in.weights[0]];
    const float *bias =
        in.weights.size() > 1 ? program.weights[in.weights[1]].ptr() : nullptr;
    kernels::packLinear(w.ptr(), w.shape[0], w.shape[1], bias, packed[i], pool);
  }
  return packed;
}

/// What `build` makes of a program: built for each caller of an in-memory
/// program (whose weights may change), once per process for a mapped one.
template <class T, class Build>
std::shared_ptr<const T> sharedPerProgram(const Program &program, Build build) {
  if (!program.backing)
    return std::make_shared<const T>(build());
  static std::mutex mutex;
  static std::map<const void *, std::weak_ptr<const T>> shared;
  std::lock_guard<std::mutex> lock(mutex);
  std::weak_ptr<const T> &slot = shared[program.backing.get()];
  std::shared_ptr<const T> built = slot.lock();
  if (!built) {
    built = std::make_shared<const T>(build());
    slot = built;
  }
  return built;
}

/// Caps on a program's computed tables: all of them together, and the work
/// of computing them (multiply-adds over every key). A program past either
/// gets none, and its sessions store those rows instead.
constexpr int64_t kMaxComputedTablesBytes = int64_t(256) << 20;
constexpr uint64_t kMaxComputedTableMacs = uint64_t(1) << 34;
/// Keys computed at a time (bounds the intermediate rows).
constexpr int64_t kTabulateChunk = 1024;

/// The rows of key indices [first, first + m) of the values `needed` (one
/// key's tables): the key's token and codes decoded from each index, the
/// key's VQs' rows their codewords, every other instruction run on its
/// operands' rows. Appends the rows of the `wanted` values to their tables.
void tabulateChunk(const Program &program,
                   const std::vector<kernels::PackedLinear> &packed,
                   const TableRows &t, const std::vector<char> &needed,
                   const std::vector<char> &wanted, int64_t first, int64_t m,
                   KeyedTables &tables, ThreadPool *pool) {
  size_t numKeys = t.codes.size();
  std::vector<int32_t> tokens(static_cast<size_t>(m));
  std::vector<std::vector<int32_t>> codes(numKeys,
                                          std::vector<int32_t>(size_t(m)));
  for (int64_t r = 0; r < m; ++r) {
    int64_t index = first + r;
    for (size_t k = numKeys; k-- > 0;) {
      codes[k][size_t(r)] = int32_t(index % t.radix[k]);
      index /= t.radix[k];
    }
    tokens[size_t(r)] = int32_t(index);
  }
  std::vector<std::vector<float>> rows(program.values.size());
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    const Instr &in = program.instrs[i];
    if (in.results.empty() || !needed[size_t(in.results[0])])
      continue;
    size_t result = size_t(in.results[0]);
    int64_t width = program.values[result].width;
    rows[result].resize(size_t(m * width));
    auto key = std::find(t.key.vqs.begin(), t.key.vqs.end(), int32_t(i));
    if (key != t.key.vqs.end()) { // a VQ of the key: its codewords
      const float *codebook = program.weights[size_t(in.weights[0])].ptr();
      const std::vector<int32_t> &c = codes[size_t(key - t.key.vqs.begin())];
      for (int64_t r = 0; r < m; ++r)
        std::copy(codebook + c[size_t(r)] * width,
                  codebook + (c[size_t(r)] + 1) * width,
                  rows[result].begin() + r * width);
    } else {
      std::vector<const float *> inputs;
      for (int32_t operand : in.operands) // the token input: unread (Embed)
        inputs.push_back(rows[size_t(operand)].data());
      runRows(program, in, &packed[i], inputs.data(), m, tokens.data(), nullptr,
              rows[result].data(), pool);
    }
    if (wanted[result])
      tables[result].insert(tables[result].end(), rows[result].begin(),
                            rows[result].end());
  }
}

KeyedTables tabulate(const Program &program,
                     const std::vector<kernels::PackedLinear> &packed,
                     ThreadPool *pool) {
  size_t numValues = program.values.size();
  KeyedTables tables(numValues);
  // The computed tables, by value; their bytes and the work to fill them.
  std::vector<std::optional<TableRows>> of(numValues);
  int64_t tableBytes = 0;
  uint64_t macs = 0;
  for (size_t v = 0; v < numValues; ++v) {
    if (program.values[v].tableRows)
      if (std::optional<TableRows> t = tableRowsOf(program, int32_t(v));
          t && t->weight < 0)
        of[v] = std::move(t);
    if (!of[v])
      continue;
    tableBytes +=
        of[v]->rows * program.values[v].width * int64_t(sizeof(float));
    // The instructions leading to the value, stopping at its key's VQs.
    std::vector<char> needed(numValues, 0);
    needed[v] = 1;
    uint64_t macsPerRow = 0;
    for (size_t i = program.instrs.size(); i-- > 0;) {
      const Instr &in = program.instrs[i];
      if (in.results.empty() || !needed[size_t(in.results[0])])
        continue;
      macsPerRow += rowMacs(program, in, 1) +
                    uint64_t(program.values[size_t(in.results[0])].width);
      if (in.op != OpCode::VectorQuantize)
        for (int32_t operand : in.operands)
          needed[size_t(operand)] = 1;
    }
    macs += macsPerRow * uint64_t(of[v]->rows);
    if (macs > kMaxComputedTableMacs)
      return tables; // none: the rows are stored
  }
  if (tableBytes == 0 || tableBytes > kMaxComputedTablesBytes ||
      macs > kMaxComputedTableMacs)
    return tables; // none: the rows are stored
  // One pass per key over its tables' values, a chunk of keys at a time.
  std::vector<char> done(numValues, 0);
  for (size_t v = 0; v < numValues; ++v) {
    if (!of[v] || done[v])
      continue;
    const TableRows &t = *of[v];
    std::vector<char> wanted(numValues, 0), needed(numValues, 0);
    for (size_t u = v; u < numValues; ++u)
      if (of[u] && !done[u] && of[u]->key.token == t.key.token &&
          of[u]->key.vqs == t.key.vqs) {
        wanted[u] = needed[u] = done[u] = 1;
        tables[u].reserve(size_t(t.rows * program.values[u].width));
      }
    for (size_t i = program.instrs.size(); i-- > 0;) {
      const Instr &in = program.instrs[i];
      if (!in.results.empty() && needed[size_t(in.results[0])] &&
          in.op != OpCode::VectorQuantize)
        for (int32_t operand : in.operands)
          needed[size_t(operand)] = 1;
    }
    for (int64_t first = 0; first < t.rows; first += kTabulateChunk)
      tabulateChunk(program, packed, t, needed, wanted, first,
                    std::min(kTabulateChunk, t.rows - first), tables, pool);
  }
  return tables;
}

} // namespace

std::shared_ptr<const std::vector<kernels::PackedLinear>>
packLinearWeights(const Program &program, ThreadPool *pool) {
  return sharedPerProgram<std::vector<kernels::PackedLinear>>(
      program, [&] { return pack(program, pool); });
}

std::shared_ptr<const KeyedTables>
tabulateKeyedRows(const Program &program,
                  const std::vector<kernels::PackedLinear> &packed,
                  ThreadPool *pool) {
  return sharedPerProgram<KeyedTables>(
      program, [&] { return tabulate(program, packed, pool); });
}

void runRows(const Program &program, const Instr &in,
             const kernels::PackedLinear *packed, const float *const *inputs,
             int64_t m, const int32_t *tokens, const int64_t *positions,
             float *out, ThreadPool *pool) {
  const int64_t width = program.values[in.results[0]].width;
  const int64_t count = m * width;
  auto wt = [&](size_t i) { return program.weights[in.weights[i]].ptr(); };
  switch (in.op) {
  case OpCode::Embed:
    kernels::embed(tokens, m, wt(0), width,
                   in.weights.size() > 1 ? wt(1) : nullptr, out);
    return;
  case OpCode::AddLearnedPositions:
    for (int64_t r = 0; r < m; ++r)
      kernels::addPositions(inputs[0] + r * width, 1, width, wt(0),
                            positions[r], in.attrs.positionOffset,
                            out + r * width);
    return;
  case OpCode::LayerNorm:
    kernels::layerNorm(inputs[0], m, width, wt(0),
                       in.weights.size() > 1 ? wt(1) : nullptr,
                       in.attrs.epsilon, out, pool);
    return;
  case OpCode::RmsNorm:
    kernels::rmsNorm(inputs[0], m, width, wt(0), in.attrs.epsilon, out, pool);
    return;
  case OpCode::Linear:
    kernels::linear(inputs[0], m, packed->in, *packed, out, width, pool);
    return;
#define INCNN_UNARY_OP(Name, Code, Str, Kernel)                                \
  case OpCode::Name:                                                           \
    kernels::Kernel(inputs[0], count, out, pool);                              \
    return;
#define INCNN_BINARY_OP(Name, Code, Str, Kernel)                               \
  case OpCode::Name:                                                           \
    kernels::Kernel(inputs[0], inputs[1], count, out, pool);                   \
    return;
#define INCNN_GATED_OP(Name, Code, Str, Activation)                            \
  case OpCode::Name:                                                           \
    kernels::gated(inputs[0], m, width, kernels::Activation, out, pool);       \
    return;
#include "incnn/runtime/OpTable.def"
  default: // attention, VQ and pooling are not token-local
    break;
  }
}

exact::AttentionShape attentionShape(const Program &program, const Instr &in) {
  exact::AttentionShape shape;
  shape.numHeads = in.attrs.numHeads;
  shape.numKvHeads = in.attrs.numKvHeads;
  shape.headDim = program.values[size_t(in.operands[0])].width / shape.numHeads;
  shape.causal = in.attrs.causal;
  shape.ropeTheta = in.attrs.ropeTheta;
  shape.scale = in.attrs.scale;
  shape.window = in.attrs.window;
  shape.valueBound = exact::valueBound(program.maxPositions);
  return shape;
}

uint64_t rowMacs(const Program &program, const Instr &in, int64_t m) {
  if (in.op != OpCode::Linear)
    return 0;
  return uint64_t(m) * uint64_t(program.values[in.operands[0]].width) *
         uint64_t(program.values[in.results[0]].width);
}

} // namespace incnn::runtime
