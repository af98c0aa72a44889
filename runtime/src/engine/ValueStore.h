//===- ValueStore.h - where the rows of a value live ------------*- C++ -*-===//
//
// The engine's storage of values: RowSlots maps rows to the slots of kept
// rows, ValueStore holds one value's rows (all of them, or the rows computed
// in the current update). Step handlers reach stores through their
// StepContext (steps/StepContext.h).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ENGINE_VALUESTORE_H
#define INCNN_RUNTIME_ENGINE_VALUESTORE_H

#include "EditPlan.h"

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace incnn::runtime {

/// Where each row's cached data lives. Kept values and attention states are
/// stored by slot, so an insert or delete renumbers slots, not rows: the
/// update moves O(n) slot numbers and O(changed rows) data.
struct RowSlots {
  std::vector<int32_t> slotOf;   ///< row -> slot
  std::vector<int32_t> previous; ///< during an update: old row -> slot
  std::vector<int32_t> free;     ///< slots no row uses
  std::vector<int32_t> released; ///< slots of rows this update removed
  int64_t capacity = 0;          ///< slots allocated
  bool identity = true;          ///< slotOf[r] == r for every row

  /// Rows [0, n) in slots [0, n) (from scratch).
  void reset(int64_t n);
  /// Kept rows keep their slots, new rows take free ones; the slots of
  /// removed rows stay readable (via `previous`) until finishUpdate.
  void remap(const EditPlan &plan);
  void finishUpdate();
};

/// Storage of one value: all rows (kept values, vectors) or only the rows
/// computed in the current update.
struct ValueStore {
  int64_t width = 0;
  bool perToken = true;
  bool keepAll = true;
  std::vector<float> data;         ///< kept stores: by RowSlots slot
  const RowSlots *slots = nullptr; ///< kept per-token stores
  Rows rows;                       ///< partial stores: which rows `data` holds
  std::vector<int32_t> slotOf;     ///< partial stores: row -> slot, or -1
  /// Old rows overwritten or deleted in this update, by old row index
  /// (kept for attention keys/values, which subtract old terms).
  std::unordered_map<int64_t, std::vector<float>> stash;
  bool needsStash = false;
  /// Table rows (Program.h's tableRowsOf; a partial store): a row this
  /// update did not compute is row index(r) of `table`: the token (when
  /// `tableByToken`), then each of `tableCodes`' code (mixed radix).
  const float *table = nullptr;
  int64_t tableRows = 0; ///< rows of `table`
  bool tableByToken = false;
  std::vector<std::pair<const ValueStore *, int64_t>> tableCodes;
  const std::vector<int32_t> *tokens = nullptr;

  /// The table row of a row whose token is `token` and whose codes are in
  /// the rows `codeRow(store)` returns.
  template <class CodeRow>
  int64_t tableIndex(int32_t token, CodeRow codeRow) const {
    int64_t index = tableByToken ? int64_t(token) : 0;
    for (const auto &[codes, radix] : tableCodes)
      index = index * radix + int64_t(codeRow(*codes)[0]);
    return index;
  }
  template <class CodeRow>
  const float *tableRow(int32_t token, CodeRow codeRow) const {
    return table + tableIndex(token, codeRow) * width;
  }
  /// Row r's slot in `data` (a per-token store), or -1 where a partial
  /// store does not hold it.
  int32_t slotOfRow(int64_t r) const {
    return keepAll                     ? slots->slotOf[size_t(r)]
           : size_t(r) < slotOf.size() ? slotOf[size_t(r)]
                                       : -1;
  }
  /// The table row that row r reads (a store with a table, r not held).
  int64_t tableIndexOf(int64_t r) const {
    return tableIndex(tableByToken ? (*tokens)[size_t(r)] : 0,
                      [r](const ValueStore &codes) { return codes.row(r); });
  }
  const float *row(int64_t r) const {
    if (!perToken)
      return data.data() + r * width;
    if (int32_t slot = slotOfRow(r); slot >= 0)
      return data.data() + int64_t(slot) * width;
    if (!table)
      return nullptr;
    return table + tableIndexOf(r) * width;
  }
  /// Whether `data` holds every one of n rows, in row order.
  bool inRowOrder(int64_t n) const {
    return !perToken ||
           (keepAll ? slots->identity : !table || int64_t(rows.size()) == n);
  }
  float *row(int64_t r) {
    return const_cast<float *>(static_cast<const ValueStore *>(this)->row(r));
  }
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_ENGINE_VALUESTORE_H
