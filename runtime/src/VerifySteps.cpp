//===- VerifySteps.cpp - checks of a program's change-propagation steps ---===//
#include "VerifySteps.h"
#include "steps/Steps.h"

#include <algorithm>
#include <set>

namespace incnn::runtime {

namespace {

struct StepError {
  std::string message;
};

[[noreturn]] void fail(std::string message) {
  throw StepError{std::move(message)};
}

/// The instruction kinds each step kind may update, and its input count.
void checkKind(const Program &p, const Step &s, const std::string &where) {
  int inputs = stepInputs(s.kind);
  if (inputs >= 0 && s.inputs.size() != size_t(inputs))
    fail(where + "takes " + std::to_string(inputs) + " row set(s), has " +
         std::to_string(s.inputs.size()));
  const StepRules &rules = stepRules(s.kind);
  if (!rules.updates) {
    if (s.instr != -1)
      fail(where + "names an instruction");
    return;
  }
  if (s.instr < 0 || size_t(s.instr) >= p.instrs.size())
    fail(where + "instruction " + std::to_string(s.instr) + " out of range");
  const Instr &in = p.instrs[size_t(s.instr)];
  if (!rules.updates(p, in))
    fail(where + "cannot update instruction " + std::to_string(s.instr) + " (" +
         opCodeName(in.op) +
         (p.values[size_t(in.results[0])].perToken ? ", per token)"
                                                   : ", vector)"));
}

using Atoms = std::set<int32_t>;

/// Row sets tracked as the sets of change sources (atoms) they are unions
/// of: a step reading rows of a value that its dirty set does not cover reads
/// rows from before the edit, which must be kept.
class CachePlanner : public CacheNeeds {
public:
  explicit CachePlanner(const Program &p)
      : p(p), why(p.values.size()), atoms(size_t(p.numRowSets)),
        dirtyOf(p.values.size(), -1) {
    for (const Step &s : p.steps) {
      Atoms out;
      if (stepOutputIsUnion(s.kind)) {
        for (int32_t r : s.inputs)
          out.insert(atoms[size_t(r)].begin(), atoms[size_t(r)].end());
      } else {
        out = {s.output}; // a fresh source of change
      }
      atoms[size_t(s.output)] = std::move(out);
      if (s.instr >= 0)
        for (int32_t r : p.instrs[size_t(s.instr)].results)
          dirtyOf[size_t(r)] = s.output;
    }
  }

  std::vector<std::string> plan() {
    for (size_t i = 0; i < p.steps.size(); ++i) {
      step = &p.steps[i];
      index = i;
      if (const StepRules &rules = stepRules(step->kind); rules.cacheNeeds)
        rules.cacheNeeds(p, *step, *this);
    }
    return std::move(why);
  }

  void keep(int32_t value, const char *reason) override {
    const ValueInfo &v = p.values[size_t(value)];
    if (!v.perToken || value == p.tokenValue || !why[size_t(value)].empty())
      return;
    why[size_t(value)] = "step " + std::to_string(index) + " (" +
                         stepKindName(step->kind) + " of instruction " +
                         std::to_string(step->instr) + ") " + reason;
  }

  bool recomputes(int32_t value, int32_t rows) const override {
    if (!p.values[size_t(value)].perToken || value == p.tokenValue)
      return true;
    const Atoms &need = atoms[size_t(rows)];
    const Atoms &have = atoms[size_t(dirtyOf[size_t(value)])];
    return std::includes(have.begin(), have.end(), need.begin(), need.end());
  }

  void takesChanges(int32_t value, int32_t rows) override {
    if (!p.values[size_t(value)].perToken || value == p.tokenValue ||
        !uncovered.empty())
      return;
    const Atoms &have = atoms[size_t(rows)];
    const Atoms &need = atoms[size_t(dirtyOf[size_t(value)])];
    if (!std::includes(have.begin(), have.end(), need.begin(), need.end()))
      uncovered =
          "step " + std::to_string(index) + " (" + stepKindName(step->kind) +
          " of instruction " + std::to_string(step->instr) +
          ") takes the changes of value " + std::to_string(value) + " '" +
          p.values[size_t(value)].name + "' from %r" + std::to_string(rows) +
          ", which does not hold every row the update changes";
  }

  /// The first step that misses changes of a value it reads, or "".
  std::string uncovered;

private:
  const Program &p;
  std::vector<std::string> why;
  std::vector<Atoms> atoms;
  std::vector<int32_t> dirtyOf; ///< value -> register
  const Step *step = nullptr;
  size_t index = 0;
};

} // namespace

Status verifySteps(const Program &p) {
  try {
    if (p.steps.empty())
      fail("the program has no change-propagation steps (compile it with "
           "this incnn-compile)");
    if (p.numRowSets <= 0 || p.numRowSets > (1 << 20))
      fail("bad row-set register count " + std::to_string(p.numRowSets));
    std::vector<int32_t> stepOf(p.instrs.size(), -1);
    std::vector<bool> written(size_t(p.numRowSets), false);
    int32_t lastInstr = -1;
    for (size_t i = 0; i < p.steps.size(); ++i) {
      const Step &s = p.steps[i];
      std::string where =
          "step " + std::to_string(i) + " (" + stepKindName(s.kind) + "): ";
      checkKind(p, s, where);
      for (int32_t r : s.inputs)
        if (r < 0 || r >= p.numRowSets || !written[size_t(r)])
          fail(where + "reads row set %" + std::to_string(r) +
               " before any step writes it");
      if (s.output < 0 || s.output >= p.numRowSets || written[size_t(s.output)])
        fail(where + "must write a fresh row set, not %" +
             std::to_string(s.output));
      written[size_t(s.output)] = true;
      if (s.instr >= 0) {
        if (stepOf[size_t(s.instr)] >= 0)
          fail(where + "updates instruction " + std::to_string(s.instr) +
               " a second time");
        if (s.instr < lastInstr)
          fail(where + "updates instruction " + std::to_string(s.instr) +
               " after instruction " + std::to_string(lastInstr));
        lastInstr = s.instr;
        stepOf[size_t(s.instr)] = int32_t(i);
      }
    }
    for (size_t i = 0; i < p.instrs.size(); ++i)
      if (stepOf[i] < 0)
        fail("instruction " + std::to_string(i) + " (" +
             opCodeName(p.instrs[i].op) + ") is updated by no step");
    // The output's dirty set.
    int32_t outInstr = -1;
    for (size_t i = 0; i < p.instrs.size(); ++i)
      for (int32_t r : p.instrs[i].results)
        if (r == p.outputValue)
          outInstr = int32_t(i);
    if (p.outputRows < 0 ||
        p.outputRows != p.steps[size_t(stepOf[size_t(outInstr)])].output)
      fail("the output row set must be the one of the output's step");

    // Every step takes all the changes of what it reads, and the cache
    // plan keeps every value a step needs between edits.
    CachePlanner planner(p);
    std::vector<std::string> required = planner.plan();
    if (!planner.uncovered.empty())
      fail(planner.uncovered);
    for (size_t v = 0; v < required.size(); ++v)
      if (!required[v].empty() && !p.values[v].keepAllRows)
        fail("the cache plan does not keep value " + std::to_string(v) + " '" +
             p.values[v].name + "', which " + required[v]);
    for (size_t v = 0; v < p.values.size(); ++v)
      if (p.values[v].tableRows && p.values[v].keepAllRows &&
          !tableRowsOf(p, int32_t(v)))
        fail("value " + std::to_string(v) + " '" + p.values[v].name +
             "' is marked table_rows, but its rows are not all rows of a "
             "table (a weight indexed by the token or by kept codes that no "
             "step reads old rows of, or a table computed from the token "
             "and kept codes of at most " +
             std::to_string(kMaxComputedTableBytes >> 20) + " MiB)");
  } catch (const StepError &e) {
    return Status::invalidArgument(e.message);
  }
  return Status::success();
}

std::vector<std::string> requiredCache(const Program &p) {
  return CachePlanner(p).plan();
}

} // namespace incnn::runtime
