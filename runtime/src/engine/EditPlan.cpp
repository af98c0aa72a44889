//===- EditPlan.cpp - where every row of an edited sequence comes from ----===//
//
// A batch of token edits applied in order, each position checked, with the
// map from new rows to old ones (and back) and the rows edited, shifted and
// removed: what the engine's update needs to keep, move and recompute.
//
//===----------------------------------------------------------------------===//
#include "Engine.h"

namespace incnn::runtime {

TokenEdit TokenEdit::replace(int64_t at, std::vector<int32_t> tokens) {
  TokenEdit e;
  e.kind = Kind::Replace;
  e.at = at;
  e.tokens = std::move(tokens);
  return e;
}

TokenEdit TokenEdit::insert(int64_t at, std::vector<int32_t> tokens) {
  TokenEdit e;
  e.kind = Kind::Insert;
  e.at = at;
  e.tokens = std::move(tokens);
  return e;
}

TokenEdit TokenEdit::erase(int64_t at, int64_t count) {
  TokenEdit e;
  e.kind = Kind::Delete;
  e.at = at;
  e.count = count;
  return e;
}

namespace {

Status checkTokenIds(const Program &program, const std::vector<int32_t> &ids,
                     size_t editIndex) {
  for (int32_t id : ids)
    if (id < 0 || id >= program.vocabSize)
      return Status::invalidArgument("edit " + std::to_string(editIndex) +
                                     ": token id " + std::to_string(id) +
                                     " is outside the vocabulary [0, " +
                                     std::to_string(program.vocabSize) + ")");
  return Status::success();
}

} // namespace

Status planEdits(const Program &program, const std::vector<int32_t> &tokens,
                 const std::vector<TokenEdit> &edits, EditPlan &plan) {
  std::vector<int32_t> cur = tokens;
  std::vector<int64_t> origin(tokens.size());
  for (size_t i = 0; i < origin.size(); ++i)
    origin[i] = int64_t(i);
  for (size_t e = 0; e < edits.size(); ++e) {
    const TokenEdit &edit = edits[e];
    int64_t n = int64_t(cur.size());
    std::string where = "edit " + std::to_string(e) + ": ";
    switch (edit.kind) {
    case TokenEdit::Kind::Replace: {
      int64_t len = int64_t(edit.tokens.size());
      if (len == 0)
        return Status::invalidArgument(where +
                                       "replace needs at least one token");
      if (edit.at < 0 || edit.at > n - len)
        return Status::outOfRange(where + "replace of " + std::to_string(len) +
                                  " token(s) at " + std::to_string(edit.at) +
                                  " is outside the sequence of " +
                                  std::to_string(n) + " tokens");
      if (Status st = checkTokenIds(program, edit.tokens, e); !st.ok())
        return st;
      std::copy(edit.tokens.begin(), edit.tokens.end(), cur.begin() + edit.at);
      break;
    }
    case TokenEdit::Kind::Insert: {
      if (edit.tokens.empty())
        return Status::invalidArgument(where +
                                       "insert needs at least one token");
      if (edit.at < 0 || edit.at > n)
        return Status::outOfRange(where + "insert position " +
                                  std::to_string(edit.at) + " is outside [0, " +
                                  std::to_string(n) + "]");
      if (Status st = checkTokenIds(program, edit.tokens, e); !st.ok())
        return st;
      cur.insert(cur.begin() + edit.at, edit.tokens.begin(), edit.tokens.end());
      origin.insert(origin.begin() + edit.at, edit.tokens.size(), -1);
      break;
    }
    case TokenEdit::Kind::Delete: {
      if (edit.count <= 0)
        return Status::invalidArgument(where + "delete needs a positive count");
      if (edit.at < 0 || edit.at > n - edit.count)
        return Status::outOfRange(
            where + "delete of " + std::to_string(edit.count) +
            " token(s) at " + std::to_string(edit.at) +
            " is outside the sequence of " + std::to_string(n) + " tokens");
      cur.erase(cur.begin() + edit.at, cur.begin() + edit.at + edit.count);
      origin.erase(origin.begin() + edit.at,
                   origin.begin() + edit.at + edit.count);
      break;
    }
    }
  }
  if (cur.empty())
    return Status::invalidArgument("the edits would leave an empty document");
  if (int64_t(cur.size()) > program.maxPositions)
    return Status::outOfRange("the edits would make the document " +
                              std::to_string(cur.size()) +
                              " tokens long, over the context window of " +
                              std::to_string(program.maxPositions));
  plan.tokens = std::move(cur);
  plan.oldTokens = tokens;
  plan.from = std::move(origin);
  plan.to.assign(tokens.size(), -1);
  plan.edited.clear();
  plan.shifted.clear();
  plan.removed.clear();
  for (size_t i = 0; i < plan.from.size(); ++i) {
    int64_t r = plan.from[i];
    if (r < 0 || plan.tokens[i] != tokens[size_t(r)])
      plan.edited.push_back(int64_t(i));
    if (r >= 0) {
      plan.to[size_t(r)] = int64_t(i);
      if (r != int64_t(i))
        plan.shifted.push_back(int64_t(i));
    }
  }
  for (size_t r = 0; r < plan.to.size(); ++r)
    if (plan.to[r] < 0)
      plan.removed.push_back(int64_t(r));
  plan.lengthChanged = plan.tokens.size() != tokens.size();
  return Status::success();
}

} // namespace incnn::runtime
