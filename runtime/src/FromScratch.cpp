//===- FromScratch.cpp - compare a session with a from-scratch run --------===//
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Serialize.h"
#include "incnn/runtime/Session.h"

#include <cmath>
#include <cstring>

namespace incnn::runtime {

namespace {

std::string shown(float x) {
  if (std::isnan(x))
    return "nan";
  if (std::isinf(x))
    return x > 0 ? "inf" : "-inf";
  return formatFloat(x);
}

Status compareOutputs(const std::vector<float> &incremental,
                      const std::vector<float> &fromScratch) {
  if (incremental.size() != fromScratch.size())
    return Status::internal(
        "the output has " + std::to_string(incremental.size()) +
        " elements incrementally but " + std::to_string(fromScratch.size()) +
        " from scratch");
  for (size_t i = 0; i < incremental.size(); ++i)
    if (std::memcmp(&incremental[i], &fromScratch[i], sizeof(float)) != 0)
      return Status::internal("output[" + std::to_string(i) + "] is " +
                              shown(incremental[i]) + " incrementally but " +
                              shown(fromScratch[i]) + " from scratch");
  return Status::success();
}

Status fromScratchFailed(const Status &st) {
  Status r = st;
  r.error = "the from-scratch run failed: " + st.error;
  return r;
}

} // namespace

Status compareWithFromScratch(const Session &session, Evaluator &oracle) {
  if (Status st = oracle.evaluate(session.tokens()); !st.ok())
    return fromScratchFailed(st);
  return compareOutputs(session.output(), oracle.output());
}

Status compareWithFromScratch(const Session &session, int threads) {
  Session oracle(session.program(), SessionOptions{threads});
  if (Status st = oracle.reset(session.tokens()); !st.ok())
    return fromScratchFailed(st);
  return compareOutputs(session.output(), oracle.output());
}

} // namespace incnn::runtime
