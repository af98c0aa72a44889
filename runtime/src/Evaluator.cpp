//===- Evaluator.cpp - From-scratch evaluation of a program ---------------===//

#include "incnn/runtime/Runtime.h"

#include "ExactAttention.h"
#include "Kernels.h"
#include "RowOps.h"
#include "ThreadPool.h"

#include <cstring>
#include <mutex>

namespace incnn::runtime {

Status validateTokens(const Program &program,
                      const std::vector<int32_t> &tokens) {
  if (tokens.empty())
    return Status::failure("the token sequence is empty");
  if (int64_t(tokens.size()) > program.maxPositions)
    return Status::failure("too many tokens: " + std::to_string(tokens.size()) +
                           " > the context window of " +
                           std::to_string(program.maxPositions));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= program.vocabSize)
      return Status::failure("token " + std::to_string(tokens[i]) +
                             " at position " + std::to_string(i) +
                             " is outside the vocabulary [0, " +
                             std::to_string(program.vocabSize) + ")");
  return Status::success();
}

uint64_t countMacs(const Program &program, int64_t numTokens) {
  uint64_t n = uint64_t(numTokens), macs = 0;
  for (const Instr &in : program.instrs) {
    auto width = [&](int32_t id) { return uint64_t(program.values[id].width); };
    auto rows = [&](int32_t id) {
      return program.values[id].perToken ? n : uint64_t(1);
    };
    switch (in.op) {
    case OpCode::Linear:
      macs +=
          rows(in.operands[0]) * width(in.operands[0]) * width(in.results[0]);
      break;
    case OpCode::Attention: {
      uint64_t pairs = in.attrs.causal ? n * (n + 1) / 2 : n * n;
      // q.k and p.v, each head-dim long, for every head: 2 * qWidth.
      macs += 2 * pairs * width(in.operands[0]);
      break;
    }
    case OpCode::VectorQuantize: {
      const Weight &cb = program.weights[in.weights[0]];
      macs +=
          rows(in.operands[0]) * uint64_t(cb.shape[1]) * width(in.operands[0]);
      break;
    }
    default:
      break;
    }
  }
  return macs;
}

struct Evaluator::Impl {
  const Program &program;
  ThreadPool pool;
  std::vector<std::vector<float>> values;
  std::vector<int32_t> tokens;
  uint64_t macs = 0;
  /// Packed weights per (Linear) instruction, built on first use.
  std::vector<kernels::PackedLinear> packed;
  bool packedReady = false;

  Impl(const Program &program, const EvaluatorOptions &options)
      : program(program), pool(options.numThreads) {}

  void packWeights();
  void run(const Instr &in, int64_t n);
  size_t indexOf(const Instr &in) const {
    return size_t(&in - program.instrs.data());
  }
};

void Evaluator::Impl::packWeights() {
  if (packedReady)
    return;
  packed = packLinearWeights(program, &pool);
  packedReady = true;
}

void Evaluator::Impl::run(const Instr &in, int64_t n) {
  const size_t index = indexOf(in);
  auto info = [&](int32_t id) -> const ValueInfo & {
    return program.values[id];
  };
  auto rows = [&](int32_t id) { return info(id).perToken ? n : int64_t(1); };
  auto src = [&](size_t i) { return values[in.operands[i]].data(); };
  // Allocate results.
  for (int32_t r : in.results)
    values[r].resize(size_t(rows(r) * info(r).width));
  float *dst = values[in.results[0]].data();
  const int64_t width = info(in.results[0]).width;

  switch (in.op) {
  case OpCode::Embed:
  case OpCode::AddLearnedPositions:
  case OpCode::LayerNorm:
  case OpCode::RmsNorm:
  case OpCode::Linear:
  case OpCode::Relu:
  case OpCode::Gelu:
  case OpCode::Silu:
  case OpCode::Add:
  case OpCode::Mul: {
    // Token-local: the same row kernels as incremental updates.
    const float *inputs[2] = {in.operands.size() > 0 ? src(0) : nullptr,
                              in.operands.size() > 1 ? src(1) : nullptr};
    std::vector<int64_t> positions;
    if (in.op == OpCode::AddLearnedPositions)
      for (int64_t i = 0; i < n; ++i)
        positions.push_back(i);
    runRows(program, in, &packed[index], inputs, rows(in.results[0]),
            tokens.data(), positions.data(), dst, &pool);
    return;
  }
  case OpCode::Attention: {
    // The exact fixed-point form, so incremental updates match bit for bit.
    exact::AttentionShape shape = attentionShape(program, in);
    exact::AttentionState state;
    if (!exact::attention(src(0), src(1), src(2), n, shape, dst, state, &pool))
      throwAttentionBreach(program, index, src(2), n * shape.kvWidth(),
                           shape.valueBound);
    return;
  }
  case OpCode::VectorQuantize: {
    checkFinite(program, index, src(0), rows(in.operands[0]) * width);
    const Weight &cb = program.weights[in.weights[0]];
    kernels::vectorQuantize(src(0), rows(in.operands[0]), width, cb.ptr(),
                            cb.shape[0], cb.shape[1], dst,
                            values[in.results[1]].data(), &pool);
    return;
  }
  case OpCode::Pool:
    checkFinite(program, index, src(0), n * width);
    if (in.attrs.pool == PoolKind::Mean)
      kernels::poolMean(src(0), n, width, dst);
    else
      kernels::poolLast(src(0), n, width, dst);
    return;
  }
}

Evaluator::Evaluator(const Program &program, EvaluatorOptions options)
    : impl(std::make_unique<Impl>(program, options)) {
  impl->values.resize(program.values.size());
}

Evaluator::~Evaluator() = default;

Status Evaluator::prepare() {
  try {
    impl->packWeights();
  } catch (const std::exception &e) {
    return Status::failure(std::string("cannot prepare the weights: ") +
                           e.what());
  }
  return Status::success();
}

Status Evaluator::evaluate(const std::vector<int32_t> &tokens) {
  Status st = validateTokens(impl->program, tokens);
  if (!st.ok())
    return st;
  try {
    impl->packWeights();
    impl->tokens = tokens;
    const int64_t n = int64_t(tokens.size());
    std::vector<float> &tok = impl->values[impl->program.tokenValue];
    tok.assign(tokens.begin(), tokens.end());
    for (const Instr &in : impl->program.instrs)
      impl->run(in, n);
    const std::vector<float> &out = impl->values[impl->program.outputValue];
    checkFinite(impl->program, impl->program.instrs.size(), out.data(),
                int64_t(out.size()));
    impl->macs = countMacs(impl->program, n);
  } catch (const ContractBreach &e) {
    // Values are half-written: drop them rather than keep a mix.
    for (std::vector<float> &v : impl->values)
      v.clear();
    impl->tokens.clear();
    return Status::breach(e.what());
  } catch (const std::bad_alloc &) {
    return Status::failure("out of memory evaluating the program");
  } catch (const std::exception &e) {
    return Status::failure(std::string("evaluation failed: ") + e.what());
  }
  return Status::success();
}

const std::vector<float> &Evaluator::output() const {
  return impl->values[impl->program.outputValue];
}

const std::vector<float> &Evaluator::value(int32_t id) const {
  return impl->values.at(size_t(id));
}

const std::vector<int32_t> &Evaluator::tokens() const { return impl->tokens; }

uint64_t Evaluator::macs() const { return impl->macs; }

const Program &Evaluator::program() const { return impl->program; }

ThreadPool &Evaluator::threadPool() { return impl->pool; }

} // namespace incnn::runtime
