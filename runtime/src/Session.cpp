//===- Session.cpp - incremental evaluation of one document ---------------===//
//
// A Session is the program's engine (engine/Engine.h) over one token
// sequence: reset runs every step from scratch, apply plans the edit batch
// (new rows, shifted rows, removed rows), moves the kept rows and runs every
// step again for the rows that changed. A refused update restores the state
// before it.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Runtime.h"

#include "RowOps.h"
#include "engine/Engine.h"

#include <chrono>
#include <optional>

namespace incnn::runtime {

Status applyEditsToTokens(const Program &program, std::vector<int32_t> &tokens,
                          const std::vector<TokenEdit> &edits) {
  EditPlan plan;
  if (Status st = planEdits(program, tokens, edits, plan); !st.ok())
    return st;
  tokens = std::move(plan.tokens);
  return Status::success();
}

namespace {

/// The state before a refused reset: the old document, or none.
void restoreOrClear(Engine &e, std::optional<Engine::Snapshot> &before) {
  if (before) {
    e.restore(std::move(*before));
  } else {
    e.tokens.clear();
    e.clear();
  }
}

} // namespace

struct Session::Impl {
  Engine engine;
  bool valid = false;
  Impl(const Program &program, const SessionOptions &options)
      : engine(program, EngineOptions{options.numThreads,
                                      options.vqCertificates, false}) {}
};

Session::Session(const Program &program, SessionOptions options)
    : impl(std::make_unique<Impl>(program, options)) {}

Session::~Session() = default;

Status Session::reset(const std::vector<int32_t> &tokens) {
  Engine &e = impl->engine;
  if (Status st = validateTokens(e.program, tokens); !st.ok())
    return st;
  auto start = std::chrono::steady_clock::now();
  std::optional<Engine::Snapshot> before;
  try {
    if (impl->valid)
      before = e.snapshot();
    e.tokens = tokens;
    e.clear();
    e.run(nullptr);
    impl->valid = true;
  } catch (const ContractBreach &err) {
    restoreOrClear(e, before);
    return Status::breach(err.what());
  } catch (const Interrupted &) {
    restoreOrClear(e, before);
    return Status::interruption("the evaluation was interrupted");
  } catch (const std::bad_alloc &) {
    impl->valid = false;
    return Status::exhausted("out of memory evaluating the document");
  }
  e.stats.micros = std::chrono::duration<double, std::micro>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  return Status::success();
}

Status Session::apply(const std::vector<TokenEdit> &edits) {
  Engine &e = impl->engine;
  if (!impl->valid)
    return Status::invalidArgument(
        "the session has no document: call reset first");
  auto start = std::chrono::steady_clock::now(); // planning is update work
  EditPlan plan;
  if (Status st = planEdits(e.program, e.tokens, edits, plan); !st.ok())
    return st;
  std::optional<Engine::Snapshot> before;
  try {
    before = e.snapshot();
    e.tokens = plan.tokens;
    e.remapKept(plan);
    e.run(&plan);
  } catch (const ContractBreach &err) {
    e.restore(std::move(*before));
    return Status::breach(err.what());
  } catch (const Interrupted &) {
    e.restore(std::move(*before));
    return Status::interruption("the update was interrupted");
  } catch (const std::bad_alloc &) {
    impl->valid = false;
    return Status::exhausted("out of memory updating the document; the session "
                             "must be reset");
  }
  e.stats.micros = std::chrono::duration<double, std::micro>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  return Status::success();
}

bool Session::hasDocument() const { return impl->valid; }

const std::vector<float> &Session::output() const {
  return impl->engine.output();
}

const std::vector<int32_t> &Session::tokens() const {
  return impl->engine.tokens;
}

const EditStats &Session::stats() const { return impl->engine.stats; }

int64_t Session::cacheBytes() const { return impl->engine.cacheBytes(); }

int64_t Session::numLayers() const { return impl->engine.numLayers; }
int64_t Session::numVQ() const { return impl->engine.numVQ; }
const Program &Session::program() const { return impl->engine.program; }

void Session::setInterruptCheck(std::function<bool()> check) {
  impl->engine.interruptCheck = std::move(check);
}

} // namespace incnn::runtime
