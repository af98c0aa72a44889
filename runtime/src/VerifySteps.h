//===- VerifySteps.h - checks of a program's change-propagation steps -----===//
//
// A program's step list must be complete (every instruction updated by one
// step of a kind its opcode supports, in program order), its row-set
// registers well formed, and its cache plan sufficient: every value a step
// reads at rows that the same update does not recompute must be kept
// between edits. An insufficient plan is rejected, never repaired.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_VERIFYSTEPS_H
#define INCNN_RUNTIME_VERIFYSTEPS_H

#include "incnn/runtime/Program.h"

#include <string>
#include <vector>

namespace incnn::runtime {

/// Checks `program.steps` against its (already verified) instructions.
Status verifySteps(const Program &program);

/// For each value, why a session must keep all its rows between edits (the
/// minimal sufficient cache plan), or "" when it need not. `program.steps`
/// must be well formed (verifySteps checks that first).
std::vector<std::string> requiredCache(const Program &program);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_VERIFYSTEPS_H
