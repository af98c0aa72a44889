//===- EditPlan.h - the plan of a batch of edits ----------------*- C++ -*-===//
//
// Row sets (sorted, unique row indices: the contents of the program's
// row-set registers) and the plan of a batch of token edits: the map from
// new rows to old ones and back, and the rows edited, shifted and removed
// (planEdits, EditPlan.cpp). The engine and the step handlers read it.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ENGINE_EDITPLAN_H
#define INCNN_RUNTIME_ENGINE_EDITPLAN_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

namespace incnn::runtime {

using Rows = std::vector<int64_t>; // sorted, unique

inline Rows unite(const Rows &a, const Rows &b) {
  Rows out;
  out.reserve(a.size() + b.size());
  std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                 std::back_inserter(out));
  return out;
}

inline Rows allRows(int64_t n) {
  Rows rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    rows[size_t(i)] = i;
  return rows;
}

/// The result of applying a batch of edits to a token sequence.
struct EditPlan {
  std::vector<int32_t> tokens;
  std::vector<int32_t> oldTokens; ///< before the edits (computed tables' old rows)
  std::vector<int64_t> from;      ///< new row -> old row, -1 if inserted
  std::vector<int64_t> to;        ///< old row -> new row, -1 if deleted
  Rows edited;                    ///< rows whose token is new or different
  Rows shifted;                   ///< kept rows whose position changed
  Rows removed;                   ///< old rows deleted
  bool lengthChanged = false;
};

/// Applies `edits` to `tokens`, tracking where each row came from.
Status planEdits(const Program &program, const std::vector<int32_t> &tokens,
                 const std::vector<TokenEdit> &edits, EditPlan &plan);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_ENGINE_EDITPLAN_H
