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

int64_t findInvalidUtf8(std::string_view text) {
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size();
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The sequence's length and the range of its second byte (Unicode,
    // table 3-7); later bytes are any continuation byte.
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      lo = c == 0xE0 ? 0xA0 : lo;
      hi = c == 0xED ? 0x9F : hi;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      lo = c == 0xF0 ? 0x90 : lo;
      hi = c == 0xF4 ? 0x8F : hi;
    } else {
      return int64_t(i);
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
      return int64_t(i);
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80)
        return int64_t(i);
    i += len;
  }
  return -1;
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

Status Document::encode(std::string_view text, std::vector<int32_t> &tokens,
                        std::vector<int64_t> &starts) const {
  if (text.size() > kMaxTextBytes)
    return Status::exhausted("the document has " + std::to_string(text.size()) +
                             " bytes, over the limit of " +
                             std::to_string(kMaxTextBytes));
  if (int64_t bad = findInvalidUtf8(text); bad >= 0)
    return Status::invalidArgument("the text is not valid UTF-8 (byte " +
                                   std::to_string(bad) + ")");
  std::vector<int32_t> body;
  if (Status st = tokenizer.encode(text, body, starts); !st.ok())
    return st;
  tokens = prefix;
  tokens.insert(tokens.end(), body.begin(), body.end());
  if (tokens.empty())
    return Status::invalidArgument("the document has no tokens");
  return Status::success();
}

Status Document::reset(std::string text) {
  std::vector<int32_t> tokens;
  std::vector<int64_t> starts;
  if (Status st = encode(text, tokens, starts); !st.ok())
    return st;
  if (Status st = session.reset(windowOf(tokens)); !st.ok())
    return st;
  text_ = std::move(text);
  tokens_ = std::move(tokens);
  starts_ = std::move(starts);
  return Status::success();
}

void Document::tokenBytes(int64_t i, int64_t &begin, int64_t &end) const {
  int64_t t = i - int64_t(prefix.size()), n = int64_t(starts_.size());
  if (t < 0 || t >= n) {
    begin = end = t < 0 ? 0 : int64_t(text_.size());
    return;
  }
  begin = starts_[size_t(t)];
  end = t + 1 < n ? starts_[size_t(t + 1)] : int64_t(text_.size());
}

Status Document::verifyTokens() const {
  std::vector<int32_t> tokens;
  std::vector<int64_t> starts;
  if (Status st = encode(text_, tokens, starts); !st.ok())
    return st;
  if (tokens != tokens_)
    return Status::invalidArgument(
        "the incremental tokens differ from a full tokenization of the text");
  if (starts != starts_)
    return Status::invalidArgument(
        "the incremental token offsets differ from a "
        "full tokenization of the text");
  return Status::success();
}

Status Document::splice(const TextEdit &e, Plan &p,
                        std::vector<TokenEdit> &edits) const {
  const std::string &text = p.text;
  int64_t n = int64_t(text.size());
  // The nearest cuts that start a token, outside the bytes the edit touches
  // and their neighbours; none within reach: the text's end.
  auto tokenAt = [&](int64_t cut) -> int64_t {
    auto it = std::lower_bound(p.starts.begin(), p.starts.end(), cut);
    return it != p.starts.end() && *it == cut ? int64_t(it - p.starts.begin())
                                              : -1;
  };
  bool cuts = tokenizer.cutsAtSpaces();
  int64_t left = 0, firstToken = 0;
  for (int64_t c = e.start - 2; cuts && c > 0 && e.start - c <= kCutSearchBytes;
       --c)
    if (int64_t t; isCut(text, c) && (t = tokenAt(c)) >= 0) {
      left = c;
      firstToken = t;
      break;
    }
  int64_t right = n, endToken = int64_t(p.starts.size());
  for (int64_t c = e.end + 1; cuts && c < n && c - e.end <= kCutSearchBytes;
       ++c)
    if (int64_t t; isCut(text, c) && (t = tokenAt(c)) >= 0) {
      right = c;
      endToken = t;
      break;
    }
  int64_t delta = int64_t(e.text.size()) - (e.end - e.start);
  p.text.replace(size_t(e.start), size_t(e.end - e.start), e.text);
  std::vector<int32_t> pieces;
  std::vector<int64_t> pieceStarts;
  std::string_view segment(p.text.data() + left, size_t(right + delta - left));
  if (Status st = tokenizer.encode(segment, pieces, pieceStarts); !st.ok())
    return st;
  p.retokenizedBytes += int64_t(segment.size());
  for (int64_t &b : pieceStarts)
    b += left;
  // The cut's space starts the segment's first piece, as in the whole text
  // (alone it is leading whitespace, which the offsets skip).
  if (left > 0 && !pieceStarts.empty())
    pieceStarts[0] = left;
  // The token edits of this text edit, then the splice.
  int64_t at = int64_t(prefix.size()) + firstToken;
  std::vector<int32_t> old(p.tokens.begin() + at, p.tokens.begin() +
                                                      int64_t(prefix.size()) +
                                                      endToken);
  for (TokenEdit &t : diffTokens(old, pieces)) {
    t.at += at;
    edits.push_back(std::move(t));
  }
  p.tokens.erase(p.tokens.begin() + at,
                 p.tokens.begin() + at + int64_t(old.size()));
  p.tokens.insert(p.tokens.begin() + at, pieces.begin(), pieces.end());
  for (size_t i = size_t(endToken); i < p.starts.size(); ++i)
    p.starts[i] += delta;
  p.starts.erase(p.starts.begin() + firstToken, p.starts.begin() + endToken);
  p.starts.insert(p.starts.begin() + firstToken, pieceStarts.begin(),
                  pieceStarts.end());
  return Status::success();
}

std::vector<TokenEdit>
Document::clipToWindow(std::vector<TokenEdit> edits,
                       const std::vector<int32_t> &next) const {
  int64_t limit = window();
  if (int64_t(tokens_.size()) <= limit && int64_t(next.size()) <= limit)
    return edits; // the whole document is in the window
  // Clip each edit to the window as it stands after the earlier ones; an
  // insertion inside the window stays an insertion (plus tokens leaving at
  // the window's end), not a rewrite of everything after it.
  std::vector<TokenEdit> clippedEdits;
  std::vector<int32_t> window = session.tokens();
  for (const TokenEdit &e : edits) {
    int64_t size = int64_t(window.size());
    if (e.at >= size)
      continue; // beyond the window
    TokenEdit clipped = e;
    if (e.kind == TokenEdit::Kind::Replace &&
        e.at + int64_t(e.tokens.size()) > size)
      clipped.tokens.resize(size_t(size - e.at));
    if (e.kind == TokenEdit::Kind::Delete)
      clipped.count = std::min(e.count, size - e.at);
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
    clippedEdits.push_back(std::move(clipped));
  }
  // Tokens pushed out of or pulled into the window's end.
  for (TokenEdit &e : diffTokens(window, windowOf(next)))
    clippedEdits.push_back(std::move(e));
  std::vector<int32_t> check = session.tokens();
  if (!applyEditsToTokens(session.program(), check, clippedEdits).ok() ||
      check != windowOf(next))
    clippedEdits = diffTokens(session.tokens(), windowOf(next));
  return clippedEdits;
}

Status Document::plan(const std::vector<TextEdit> &edits, Plan &out) const {
  auto t0 = std::chrono::steady_clock::now();
  Plan p;
  p.text = text_;
  p.tokens = tokens_;
  p.starts = starts_;
  std::vector<TokenEdit> tokenEdits;
  for (size_t i = 0; i < edits.size(); ++i) {
    const TextEdit &e = edits[i];
    const std::string &next = p.text;
    std::string where =
        edits.size() > 1 ? "edit " + std::to_string(i) + ": " : "";
    if (e.start < 0 || e.end < e.start || e.end > int64_t(next.size()))
      return Status::outOfRange(
          where + "byte range [" + std::to_string(e.start) + ", " +
          std::to_string(e.end) + ") is outside the document of " +
          std::to_string(next.size()) + " bytes");
    if (!isUtf8Boundary(next, e.start) || !isUtf8Boundary(next, e.end))
      return Status::invalidArgument(
          where + "byte range [" + std::to_string(e.start) + ", " +
          std::to_string(e.end) + ") splits a UTF-8 character of the document");
    if (int64_t bad = findInvalidUtf8(e.text); bad >= 0)
      return Status::invalidArgument(where +
                                     "the replacement text is not valid "
                                     "UTF-8 (byte " +
                                     std::to_string(bad) + ")");
    if (next.size() - size_t(e.end - e.start) + e.text.size() > kMaxTextBytes)
      return Status::exhausted(where + "the edited document would exceed " +
                               std::to_string(kMaxTextBytes) + " bytes");
    if (Status st = splice(e, p, tokenEdits); !st.ok())
      return st.within(where + "the edited text: ");
  }
  if (p.tokens.empty())
    return Status::invalidArgument(
        "the edited text: the document has no tokens");
  p.tokensChanged = !tokenEdits.empty();
  p.tokenEdits = clipToWindow(std::move(tokenEdits), p.tokens);
  p.tokenizeMicros = std::chrono::duration<double, std::micro>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
  out = std::move(p);
  return Status::success();
}

Status Document::commit(Plan &&plan) {
  // An empty batch (the change lies beyond the window) still refreshes the
  // session's statistics: nothing is recomputed.
  if (Status st = session.apply(plan.tokenEdits); !st.ok())
    return st;
  text_ = std::move(plan.text);
  tokens_ = std::move(plan.tokens);
  starts_ = std::move(plan.starts);
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
  r.retokenizedBytes = p.retokenizedBytes;
  r.insideWindow = !p.tokenEdits.empty();
  r.tokensChanged = p.tokensChanged;
  r.firstChanged = p.tokenEdits.empty() ? -1 : p.tokenEdits.front().at;
  r.tokenEdits = p.tokenEdits;
  return commit(std::move(p));
}

} // namespace incnn::runtime
