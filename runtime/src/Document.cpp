//===- Document.cpp - a text document over an incremental session ---------===//
#include "incnn/runtime/Document.h"

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
    edits.push_back(TokenEdit::erase(int64_t(prefix) + common, removed - common));
  if (added > common)
    edits.push_back(
        TokenEdit::insert(int64_t(prefix) + common, middle(common, added - common)));
  return edits;
}

bool isUtf8Boundary(std::string_view text, int64_t i) {
  if (i < 0 || i > int64_t(text.size()))
    return false;
  if (i == int64_t(text.size()))
    return true;
  return (static_cast<unsigned char>(text[size_t(i)]) & 0xC0) != 0x80;
}

Document::Document(Session &session, const Tokenizer &tokenizer)
    : session(session), tokenizer(tokenizer) {}

int64_t Document::window() const { return session.program().maxPositions; }

std::vector<int32_t>
Document::windowOf(const std::vector<int32_t> &tokens) const {
  size_t n = std::min(tokens.size(), size_t(window()));
  return std::vector<int32_t>(tokens.begin(), tokens.begin() + int64_t(n));
}

Status Document::reset(std::string text) {
  std::vector<int32_t> tokens;
  if (Status st = tokenizer.encode(text, tokens); !st.ok())
    return st;
  if (tokens.empty())
    return Status::failure("the document has no tokens");
  if (Status st = session.reset(windowOf(tokens)); !st.ok())
    return st;
  text_ = std::move(text);
  tokens_ = std::move(tokens);
  return Status::success();
}

Status Document::applyText(int64_t start, int64_t end,
                           std::string_view replacement, EditResult *result) {
  if (start < 0 || end < start || end > int64_t(text_.size()))
    return Status::failure("byte range [" + std::to_string(start) + ", " +
                           std::to_string(end) + ") is outside the text of " +
                           std::to_string(text_.size()) + " bytes");
  if (!isUtf8Boundary(text_, start) || !isUtf8Boundary(text_, end))
    return Status::failure("byte range [" + std::to_string(start) + ", " +
                           std::to_string(end) +
                           ") splits a UTF-8 character");
  auto t0 = std::chrono::steady_clock::now();
  std::string next = text_.substr(0, size_t(start));
  next.append(replacement);
  next.append(text_, size_t(end));
  std::vector<int32_t> tokens;
  if (Status st = tokenizer.encode(next, tokens); !st.ok())
    return st;
  if (tokens.empty())
    return Status::failure("the edit would leave a document with no tokens");
  // Diff the whole token lists, so an insertion inside the window is an
  // insertion (plus tokens leaving at the window's end), not a rewrite of
  // everything after it.
  std::vector<TokenEdit> edits;
  std::vector<TokenEdit> full = diffTokens(tokens_, tokens);
  std::vector<int32_t> window = session.tokens();
  int64_t limit = int64_t(window.size());
  for (const TokenEdit &e : full) {
    if (e.at >= limit)
      continue; // beyond the window
    TokenEdit clipped = e;
    if (e.kind == TokenEdit::Kind::Replace &&
        e.at + int64_t(e.tokens.size()) > limit)
      clipped.tokens.resize(size_t(limit - e.at));
    if (e.kind == TokenEdit::Kind::Delete)
      clipped.count = std::min(e.count, limit - e.at);
    if (!applyEditsToTokens(session.program(), window, {clipped}).ok())
      break; // e.g. too long: fall back to a plain diff below
    edits.push_back(clipped);
    limit = int64_t(window.size());
  }
  // Whatever remains (tokens pushed out of or pulled into the window).
  for (TokenEdit &e : diffTokens(window, windowOf(tokens)))
    edits.push_back(std::move(e));
  if (!applyEditsToTokens(session.program(), window, {}).ok() ||
      window.size() > size_t(this->window()))
    edits = diffTokens(session.tokens(), windowOf(tokens));
  EditResult local;
  EditResult &r = result ? *result : local;
  r.tokenizeMicros = std::chrono::duration<double, std::micro>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
  r.insideWindow = !edits.empty();
  r.firstChanged = edits.empty() ? -1 : edits.front().at;
  if (!edits.empty())
    if (Status st = session.apply(edits); !st.ok())
      return st;
  r.tokenEdits = std::move(edits);
  text_ = std::move(next);
  tokens_ = std::move(tokens);
  return Status::success();
}

} // namespace incnn::runtime
