//===- Document.h - a text document over an incremental session --*- C++
//-*-===//
//
// Keeps a document's text, tokenizes it, and turns byte-range text edits into
// token edits that the Session applies incrementally. With a tokenizer that
// cuts at spaces (Tokenizer::cutsAtSpaces), an edit re-tokenizes only the
// text between the nearest cuts around it (isCut: a single ASCII space
// between printable ASCII characters that starts a token) and splices the
// pieces in; the result equals a full re-tokenization. Otherwise, or when no
// cut lies within kCutSearchBytes, the rest of the text on that side is
// re-tokenized. The model sees the
// first `maxPositions` tokens of the text (its context window); an edit whose
// token changes all lie beyond the window leaves the session untouched.
//
// Threading: like Session, one thread at a time.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_DOCUMENT_H
#define INCNN_RUNTIME_DOCUMENT_H

#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Tokenizer.h"

#include <string>
#include <string_view>
#include <vector>

namespace incnn::runtime {

/// The edits that turn token list `from` into `to`: the common prefix and
/// suffix are kept and the middle becomes one replace, insert and/or delete.
/// Empty when the lists are equal.
std::vector<TokenEdit> diffTokens(const std::vector<int32_t> &from,
                                  const std::vector<int32_t> &to);

/// True if byte offset `i` of `text` starts a UTF-8 character (or is its end).
bool isUtf8Boundary(std::string_view text, int64_t i);

/// The offset of the first byte of `text` that does not start a well-formed
/// UTF-8 sequence (no overlong forms, surrogates or code points past
/// U+10FFFF, as a strict decoder reads it), or -1 when the text is valid.
int64_t findInvalidUtf8(std::string_view text);

class Document {
public:
  /// How far from an edit a cut is searched for.
  static constexpr int64_t kCutSearchBytes = 4096;

  /// `session` and `tokenizer` must outlive the document. `prefix` tokens
  /// (e.g. BOS) precede the text's tokens.
  Document(Session &session, const Tokenizer &tokenizer,
           std::vector<int32_t> prefix = {});

  /// Tokenizes `text` and evaluates its first window from scratch. The text
  /// must be valid UTF-8 (as must every edit's replacement).
  Status reset(std::string text);
  /// True if the text has more tokens than the context window.
  bool truncated() const { return int64_t(tokens_.size()) > window(); }

  /// A validated batch of text edits, ready to commit.
  struct Plan {
    std::string text;
    std::vector<int32_t> tokens;
    std::vector<int64_t> starts;
    std::vector<TokenEdit> tokenEdits;
    double tokenizeMicros = 0;
    int64_t retokenizedBytes = 0; ///< bytes of text the tokenizer read
    bool tokensChanged = false;   ///< false: the text's tokens are the same
  };
  /// Applies `edits` in order to a copy of the text, re-tokenizes what they
  /// touch and derives the token edits, changing nothing. Errors name the
  /// edit.
  Status plan(const std::vector<TextEdit> &edits, Plan &out) const;
  /// Applies a plan made for the current state.
  Status commit(Plan &&plan);

  struct EditResult {
    std::vector<TokenEdit> tokenEdits; ///< applied to the session
    bool insideWindow = false;         ///< false: the window did not change
    bool tokensChanged = false;        ///< false: no token changed at all
    int64_t firstChanged = -1;         ///< first changed token position
    double tokenizeMicros = 0;         ///< re-tokenization and diff time
    int64_t retokenizedBytes = 0;      ///< bytes of text the tokenizer read
  };

  /// Replaces bytes [start, end) of the text with `replacement`. Offsets
  /// must lie on UTF-8 boundaries. A rejected edit changes nothing.
  Status applyText(int64_t start, int64_t end, std::string_view replacement,
                   EditResult *result = nullptr);

  const std::string &text() const { return text_; }
  /// Every token of the text (the session holds the first window of them).
  const std::vector<int32_t> &allTokens() const { return tokens_; }
  /// Byte range [begin, end) of the text that token `i` of allTokens()
  /// covers (empty for prefix tokens such as BOS).
  void tokenBytes(int64_t i, int64_t &begin, int64_t &end) const;
  int64_t window() const;
  /// Checks the tokens against a full tokenization of the text.
  Status verifyTokens() const;

private:
  std::vector<int32_t> windowOf(const std::vector<int32_t> &tokens) const;
  Status encode(std::string_view text, std::vector<int32_t> &tokens,
                std::vector<int64_t> &starts) const;
  /// Applies one validated edit to `plan`, re-tokenizing between the cuts
  /// around it; appends its token edits (coordinates of the whole list).
  Status splice(const TextEdit &edit, Plan &plan,
                std::vector<TokenEdit> &edits) const;
  /// Clips token edits of the whole list to the session's window.
  std::vector<TokenEdit> clipToWindow(std::vector<TokenEdit> edits,
                                      const std::vector<int32_t> &next) const;

  Session &session;
  const Tokenizer &tokenizer;
  std::vector<int32_t> prefix;
  std::string text_;
  std::vector<int32_t> tokens_;
  std::vector<int64_t> starts_; ///< byte offset of each text token
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_DOCUMENT_H
