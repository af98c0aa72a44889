//===- Runtime.h - From-scratch evaluation of a program ---------*- C++ -*-===//
//
// `Evaluator` runs a verified Program on a token sequence from scratch (the
// same engine as sessions, every row dirty) and keeps every intermediate
// value as a row-major float matrix [n, width] (or a vector).
//
// Threading: an Evaluator is used by one thread at a time; it runs its
// kernels on its own thread pool. Several Evaluators may share a Program.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_RUNTIME_H
#define INCNN_RUNTIME_RUNTIME_H

#include "incnn/runtime/Program.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace incnn::runtime {

class Session;
class ThreadPool;

struct EvaluatorOptions {
  /// Threads used for kernels, the caller included; 0 = all hardware threads.
  int numThreads = 0;
};

/// Checks a token sequence against a program: non-empty, at most
/// maxPositions long, every id in [0, vocabSize).
Status validateTokens(const Program &program,
                      const std::vector<int32_t> &tokens);

/// Multiply-accumulates of a from-scratch run on `numTokens` tokens: linear
/// layers (rows * in * out), attention (q.k and p.v products) and VQ
/// distance computations (rows * K * width).
uint64_t countMacs(const Program &program, int64_t numTokens);

class Evaluator {
public:
  /// `program` must be verified and must outlive the Evaluator.
  explicit Evaluator(const Program &program, EvaluatorOptions options = {});
  ~Evaluator();
  Evaluator(const Evaluator &) = delete;
  Evaluator &operator=(const Evaluator &) = delete;

  /// Kept for callers that separate setup from timing: the weights are
  /// packed when the Evaluator is constructed, so this does nothing.
  Status prepare();

  /// Runs the program from scratch on `tokens`. Bad tokens keep the previous
  /// state; an input outside the exactness contract (StatusCode::OutOfContract)
  /// leaves no values (output() is empty).
  Status evaluate(const std::vector<int32_t> &tokens);

  /// The program output (logits) of the last successful evaluate().
  const std::vector<float> &output() const;
  /// Any value of the last evaluation: [numTokens, width] row-major for
  /// per-token values, [width] for vectors.
  const std::vector<float> &value(int32_t id) const;
  /// Tokens of the last successful evaluation.
  const std::vector<int32_t> &tokens() const;
  int64_t numTokens() const { return int64_t(tokens().size()); }
  /// MACs of the last evaluation (== countMacs for a from-scratch run).
  uint64_t macs() const;

  const Program &program() const;
  ThreadPool &threadPool();

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Compares `session`'s output with a from-scratch evaluation of its tokens
/// by `oracle`, bit for bit (the check behind incnn-run --verify, incnn-bench,
/// incnn-serve's "verify" and the Python verify()). OK when every bit agrees;
/// otherwise the error names the first element that differs ("output[3] is
/// 0.25 incrementally but 0.5 from scratch") or why the from-scratch run
/// failed. Reusing one oracle saves packing the weights for every check.
Status compareWithFromScratch(const Session &session, Evaluator &oracle);

/// The same against a one-off from-scratch run on `threads` kernel threads
/// (a Session reset on the tokens: it keeps only what the cache plan keeps,
/// where an Evaluator keeps every value).
Status compareWithFromScratch(const Session &session, int threads);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_RUNTIME_H
