//===- ChangeAnalysis.cpp - which values change when rows change ----------===//
#include "incnn/Compiler/ChangeAnalysis.h"

#include "incnn/Dialect/VQT/VQTDialect.h"
#include "incnn/Dialect/VQT/VQTOps.h"
#include "mlir/IR/Block.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include <functional>

using namespace mlir;
using incnn::vqt::ChangeRule;

namespace incnn {

bool ChangeAnalysis::contains(const SourceSet &set, const Source &source) {
  return llvm::is_contained(set, source);
}

void ChangeAnalysis::unite(SourceSet &into, const SourceSet &from) {
  for (const Source &s : from)
    if (!contains(into, s))
      into.push_back(s);
}

ChangeAnalysis::ChangeAnalysis(Operation *root) {
  root->walk([&](FunctionOpInterface func) {
    if (func.isExternal())
      return;
    for (BlockArgument arg : func.getArguments())
      if (vqt::isTokenIdsType(arg.getType()) || vqt::isRowsType(arg.getType()))
        sources[arg] = {Source{Source::Edited, nullptr}};
    func->walk([&](vqt::ChangeRuleOpInterface op) {
      opNumbers[op] = opNumbers.size();
      ChangeRule rule = op.getChangeRule();
      SourceSet result;
      if (rule == ChangeRule::TokenLocal) {
        for (Value operand : op->getOperands())
          unite(result, getSources(operand));
        if (op.dependsOnPosition())
          unite(result, {Source{Source::Shifted, nullptr}});
      } else if (rule != ChangeRule::Constant) {
        // Token-mixing, quantizing and reducing ops start a new dirty set.
        result.push_back(Source{Source::Op, op});
      }
      for (Value value : op->getResults())
        sources[value] = result;
    });
  });
}

const ChangeAnalysis::SourceSet &ChangeAnalysis::getSources(Value value) const {
  auto it = sources.find(value);
  return it == sources.end() ? empty : it->second;
}

bool ChangeAnalysis::needsAllRows(Value value) const {
  if (!vqt::isRowsType(value.getType()) || getSources(value).empty())
    return false;
  const SourceSet &own = getSources(value);
  for (OpOperand &use : value.getUses()) {
    // A per-token result is read at every row after every edit.
    if (use.getOwner()->hasTrait<OpTrait::ReturnLike>())
      return true;
    auto user = dyn_cast<vqt::ChangeRuleOpInterface>(use.getOwner());
    if (!user)
      continue;
    switch (user.getChangeRule()) {
    case ChangeRule::Constant:
    case ChangeRule::Quantizing:
      // Quantizing ops read exactly their input's dirty rows.
      break;
    case ChangeRule::Reducing:
      return true;
    case ChangeRule::TokenMixing:
      // Keys/values are read at every row; a query row is read when other
      // rows' keys changed.
      return true;
    case ChangeRule::TokenLocal: {
      if (!user.isRowAligned(use.getOperandNumber()))
        return true;
      // The user refreshes the rows of its own dirty set; clean rows of this
      // operand are read where that set reaches beyond this value's.
      for (const Source &s : getSources(user->getResult(0)))
        if (!contains(own, s))
          return true;
      break;
    }
    }
  }
  return false;
}

Operation *ChangeAnalysis::getBypassingMixer(Operation *quantizer) const {
  auto mixerIn = [&](Value value) -> Operation * {
    for (const Source &s : getSources(value))
      if (s.kind == Source::Op &&
          cast<vqt::ChangeRuleOpInterface>(s.op).getChangeRule() ==
              ChangeRule::TokenMixing)
        return s.op;
    return nullptr;
  };
  // Follows token-local users; a path is swamped once a mixer's set joins.
  std::function<Operation *(Value)> swampedBy = [&](Value value) {
    Operation *found = nullptr;
    for (Operation *user : value.getUsers()) {
      auto rule = dyn_cast<vqt::ChangeRuleOpInterface>(user);
      if (!rule || rule.getChangeRule() != ChangeRule::TokenLocal ||
          user->getNumResults() == 0)
        return (Operation *)nullptr;
      Operation *mixer = mixerIn(user->getResult(0));
      if (!mixer)
        mixer = swampedBy(user->getResult(0));
      if (!mixer)
        return (Operation *)nullptr;
      found = found ? found : mixer;
    }
    return found;
  };
  if (quantizer->getNumResults() == 0)
    return nullptr;
  return swampedBy(quantizer->getResult(0));
}

std::string ChangeAnalysis::describe(const Source &source) const {
  switch (source.kind) {
  case Source::Edited:
    return "edited";
  case Source::Shifted:
    return "shifted";
  case Source::Op:
    return source.op->getName().getStringRef().str() + "#" +
           std::to_string(opNumbers.lookup(source.op));
  }
  return "?";
}

} // namespace incnn
