//===- Document.cpp - a text document over an incremental session ---------===//
#include "incnn/runtime/Document.h"
#include "incnn/runtime/Limits.h"

#include <algorithm>
#include <chrono>

namespace incnn::runtime {

std::vector<TokenEdit> diffTokens(const std::vector<int32_t> &from,
                                  const std::vector<int32_t> &to) {
  size_t prefix = 0;
  while (prefix < from.size() && prefix < to.size() &&
         from[prefix] == to[prefix])
    ++prefix;
  size_t suffix = 0;
  while (suffix < from.size() - prefix && suffix < to.size() - prefix &&
         from[from.size() - 1 - suffix] == to[to.size() - 1 - suffix])
    ++suffix;
  int64_t removed = int64_t(from.size() - prefix - suffix);
  int64_t added = int64_t(to.size() - prefix - suffix);
  std::vector<TokenEdit> edits;
  int64_t common = std::min(removed, added);
  auto middle = [&](int64_t begin, int64_t count) {
    return std::vector<int32_t>(to.begin() + int64_t(prefix) + begin,
                                to.begin() + int64_t(prefix) + begin + count);
  };
  if (common > 0)
    edits.push_back(TokenEdit::replace(int64_t(prefix), middle(0, common)));
  if (removed > common)
    edits.push_back(
        TokenEdit::erase(int64_t(prefix) + common, removed - common));
  if (added > common)
    edits.push_back(TokenEdit::insert(int64_t(prefix) + common,
                                      middle(common, added - common)));
  return edits;
}

bool isUtf8Boundary(std::string_view text, int64_t i) {
  if (i < 0 || i > int64_t(text.size()))
    return false;
  if (i == int64_t(text.size()))
    return true;
  return (static_cast<unsigned char>(text[size_t(i)]) & 0xC0) != 0x80;
}

Document::Document(Session &session, const Tokenizer &tokenizer,
                   std::vector<int32_t> prefix)
    : session(session), tokenizer(tokenizer), prefix(std::move(prefix)) {}

int64_t Document::window() const { return session.program().maxPositions; }

std::vector<int32_t>
Document::windowOf(const std::vector<int32_t> &tokens) const {
  size_t n = std::min(tokens.size(), size_t(window()));
  return std::vector<int32_t>(tokens.begin(), tokens.begin() + int64_t(n));
}

Status Document::encode(std::string_view text,
                        std::vector<int32_t> &tokens) const {
  if (text.size() > kMaxTextBytes)
    return Status::failure("the document has " + std::to_string(text.size()) +
                           " bytes, over the limit of " +
                           std::to_string(kMaxTextBytes));
  std::vector<int32_t> body;
  if (Status st = tokenizer.encode(text, body); !st.ok())
    return st;
  tokens = prefix;
  tokens.insert(tokens.end(), body.begin(), body.end());
  if (tokens.empty())
    return Status::failure("the document has no tokens");
  return Status::success();
}

Status Document::reset(std::string text) {
  std::vector<int32_t> tokens;
  if (Status st = encode(text, tokens); !st.ok())
    return st;
  if (Status st = session.reset(windowOf(tokens)); !st.ok())
    return st;
  text_ = std::move(text);
  tokens_ = std::move(tokens);
  return Status::success();
}

Status Document::plan(const std::vector<TextEdit> &edits, Plan &out) const {
  auto t0 = std::chrono::steady_clock::now();
  std::string next = text_;
  for (size_t i = 0; i < edits.size(); ++i) {
    const TextEdit &e = edits[i];
    std::string where =
        edits.size() > 1 ? "edit " + std::to_string(i) + ": " : "";
    if (e.start < 0 || e.end < e.start || e.end > int64_t(next.size()))
      return Status::failure(where + "byte range [" + std::to_string(e.start) +
                             ", " + std::to_string(e.end) +
                             ") is outside the document of " +
                             std::to_string(next.size()) + " bytes");
    if (!isUtf8Boundary(next, e.start) || !isUtf8Boundary(next, e.end))
      return Status::failure(where + "byte range [" + std::to_string(e.start) +
                             ", " + std::to_string(e.end) +
                             ") splits a UTF-8 character of the document");
    if (next.size() - size_t(e.end - e.start) + e.text.size() > kMaxTextBytes)
      return Status::failure(where + "the edited document would exceed " +
                             std::to_string(kMaxTextBytes) + " bytes");
    next.replace(size_t(e.start), size_t(e.end - e.start), e.text);
  }
  std::vector<int32_t> tokens;
  if (Status st = encode(next, tokens); !st.ok())
    return Status::failure("the edited text: " + st.error);
  // Diff the whole token lists, so an insertion inside the window is an
  // insertion (plus tokens leaving at the window's end), not a rewrite of
  // everything after it.
  std::vector<TokenEdit> tokenEdits;
  std::vector<int32_t> window = session.tokens();
  for (const TokenEdit &e : diffTokens(tokens_, tokens)) {
    int64_t limit = int64_t(window.size());
    if (e.at >= limit)
      continue; // beyond the window
    TokenEdit clipped = e;
    if (e.kind == TokenEdit::Kind::Replace &&
        e.at + int64_t(e.tokens.size()) > limit)
      clipped.tokens.resize(size_t(limit - e.at));
    if (e.kind == TokenEdit::Kind::Delete)
      clipped.count = std::min(e.count, limit - e.at);
    // Apply it here without the window limit: the batch may exceed the
    // window in between, the tail edit below trims it back.
    if (clipped.kind == TokenEdit::Kind::Delete)
      window.erase(window.begin() + clipped.at,
                   window.begin() + clipped.at + clipped.count);
    else if (clipped.kind == TokenEdit::Kind::Insert)
      window.insert(window.begin() + clipped.at, clipped.tokens.begin(),
                    clipped.tokens.end());
    else
      std::copy(clipped.tokens.begin(), clipped.tokens.end(),
                window.begin() + clipped.at);
    tokenEdits.push_back(std::move(clipped));
  }
  // Tokens pushed out of or pulled into the window's end.
  for (TokenEdit &e : diffTokens(window, windowOf(tokens)))
    tokenEdits.push_back(std::move(e));
  std::vector<int32_t> check = session.tokens();
  if (!applyEditsToTokens(session.program(), check, tokenEdits).ok() ||
      check != windowOf(tokens))
    tokenEdits = diffTokens(session.tokens(), windowOf(tokens));
  out.text = std::move(next);
  out.tokens = std::move(tokens);
  out.tokenEdits = std::move(tokenEdits);
  out.tokenizeMicros = std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - t0)
                           .count();
  return Status::success();
}

Status Document::commit(Plan &&plan) {
  // An empty batch (the change lies beyond the window) still refreshes the
  // session's statistics: nothing is recomputed.
  if (Status st = session.apply(plan.tokenEdits); !st.ok())
    return st;
  text_ = std::move(plan.text);
  tokens_ = std::move(plan.tokens);
  return Status::success();
}

Status Document::applyText(int64_t start, int64_t end,
                           std::string_view replacement, EditResult *result) {
  Plan p;
  if (Status st = plan({TextEdit{start, end, std::string(replacement)}}, p);
      !st.ok())
    return st;
  EditResult local;
  EditResult &r = result ? *result : local;
  r.tokenizeMicros = p.tokenizeMicros;
  r.insideWindow = !p.tokenEdits.empty();
  r.firstChanged = p.tokenEdits.empty() ? -1 : p.tokenEdits.front().at;
  r.tokenEdits = p.tokenEdits;
  return commit(std::move(p));
}

} // namespace incnn::runtime
