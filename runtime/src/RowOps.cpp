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

/// Caps on a program's token tables: all of them together, and the work of
/// computing them (multiply-adds over the vocabulary). A program past either
/// gets none, and its sessions store those rows instead.
constexpr int64_t kMaxTokenTablesBytes = int64_t(256) << 20;
constexpr uint64_t kMaxTokenTableMacs = uint64_t(1) << 34;
/// Vocabulary rows computed at a time (bounds the intermediate rows).
constexpr int64_t kTabulateChunk = 1024;

TokenTables tabulate(const Program &program,
                     const std::vector<kernels::PackedLinear> &packed,
                     ThreadPool *pool) {
  size_t numValues = program.values.size();
  TokenTables tables(numValues);
  std::vector<char> wanted(numValues, 0), needed(numValues, 0);
  int64_t vocab = program.vocabSize, tableBytes = 0;
  for (size_t v = 0; v < numValues; ++v)
    if (program.values[v].tableRows)
      if (std::optional<TableRows> t = tableRowsOf(program, int32_t(v));
          t && t->weight < 0) {
        wanted[v] = needed[v] = 1;
        tableBytes += vocab * program.values[v].width * int64_t(sizeof(float));
      }
  uint64_t macsPerRow = 0;
  for (auto in = program.instrs.rbegin(); in != program.instrs.rend(); ++in)
    if (in->results.size() == 1 && needed[size_t(in->results[0])]) {
      macsPerRow += rowMacs(program, *in, 1) +
                    uint64_t(program.values[size_t(in->results[0])].width);
      for (int32_t operand : in->operands)
        needed[size_t(operand)] = 1;
    }
  if (tableBytes == 0 || tableBytes > kMaxTokenTablesBytes ||
      macsPerRow > kMaxTokenTableMacs / uint64_t(vocab))
    return tables; // none: the rows are stored
  for (size_t v = 0; v < numValues; ++v)
    if (wanted[v])
      tables[v].resize(size_t(vocab * program.values[v].width));
  // Chunks of the vocabulary through the instructions, in order; the chunk's
  // rows of each value in `chunk`, the wanted ones copied to their tables.
  std::vector<std::vector<float>> chunk(numValues);
  std::vector<int32_t> ids(static_cast<size_t>(kTabulateChunk));
  for (int64_t first = 0; first < vocab; first += kTabulateChunk) {
    int64_t m = std::min(kTabulateChunk, vocab - first);
    for (int64_t t = 0; t < m; ++t)
      ids[size_t(t)] = int32_t(first + t);
    for (size_t i = 0; i < program.instrs.size(); ++i) {
      const Instr &in = program.instrs[i];
      if (in.results.size() != 1 || !needed[size_t(in.results[0])])
        continue;
      std::vector<const float *> inputs;
      for (int32_t operand : in.operands) // the token input: unread (Embed)
        inputs.push_back(chunk[size_t(operand)].data());
      size_t result = size_t(in.results[0]);
      int64_t width = program.values[result].width;
      chunk[result].resize(size_t(m * width));
      runRows(program, in, &packed[i], inputs.data(), m, ids.data(), nullptr,
              chunk[result].data(), pool);
      if (wanted[result])
        std::copy(chunk[result].begin(), chunk[result].end(),
                  tables[result].begin() + first * width);
    }
  }
  return tables;
}

} // namespace

std::shared_ptr<const std::vector<kernels::PackedLinear>>
packLinearWeights(const Program &program, ThreadPool *pool) {
  return sharedPerProgram<std::vector<kernels::PackedLinear>>(
      program, [&] { return pack(program, pool); });
}

std::shared_ptr<const TokenTables>
tabulateTokenRows(const Program &program,
                  const std::vector<kernels::PackedLinear> &packed,
                  ThreadPool *pool) {
  return sharedPerProgram<TokenTables>(
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
