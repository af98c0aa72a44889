//===- Evaluator.cpp - From-scratch evaluation of a program ---------------===//

#include "incnn/runtime/Runtime.h"

#include "RowOps.h"
#include "engine/Engine.h"

namespace incnn::runtime {

Status validateTokens(const Program &program,
                      const std::vector<int32_t> &tokens) {
  if (tokens.empty())
    return Status::invalidArgument("the token sequence is empty");
  if (int64_t(tokens.size()) > program.maxPositions)
    return Status::outOfRange(
        "too many tokens: " + std::to_string(tokens.size()) +
        " > the context window of " + std::to_string(program.maxPositions));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= program.vocabSize)
      return Status::invalidArgument("token " + std::to_string(tokens[i]) +
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
      uint64_t pairs =
          exact::attendedPairs(attentionShape(program, in), int64_t(n));
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
  /// The same engine as sessions, keeping every row of every value.
  Engine engine;
  uint64_t macs = 0;
  Impl(const Program &program, const EvaluatorOptions &options)
      : engine(program, EngineOptions{options.numThreads, false, true}) {}
};

Evaluator::Evaluator(const Program &program, EvaluatorOptions options)
    : impl(std::make_unique<Impl>(program, options)) {}

Evaluator::~Evaluator() = default;

Status Evaluator::prepare() { return Status::success(); }

Status Evaluator::evaluate(const std::vector<int32_t> &tokens) {
  Engine &e = impl->engine;
  Status st = validateTokens(e.program, tokens);
  if (!st.ok())
    return st;
  try {
    e.tokens = tokens; // every row is rewritten: buffers are reused
    e.run(nullptr);
    impl->macs = countMacs(e.program, int64_t(tokens.size()));
  } catch (const ContractBreach &err) {
    // Values are half-written: drop them rather than keep a mix.
    e.clear();
    e.tokens.clear();
    return Status::breach(err.what());
  } catch (const std::bad_alloc &) {
    e.clear();
    e.tokens.clear();
    return Status::exhausted("out of memory evaluating the program");
  } catch (const std::exception &err) {
    return Status::internal(std::string("evaluation failed: ") + err.what());
  }
  return Status::success();
}

const std::vector<float> &Evaluator::output() const {
  return impl->engine.stored(impl->engine.program.outputValue);
}

const std::vector<float> &Evaluator::value(int32_t id) const {
  return impl->engine.stored(id);
}

const std::vector<int32_t> &Evaluator::tokens() const {
  return impl->engine.tokens;
}

uint64_t Evaluator::macs() const { return impl->macs; }

const Program &Evaluator::program() const { return impl->engine.program; }

ThreadPool &Evaluator::threadPool() { return impl->engine.pool; }

} // namespace incnn::runtime
