//===- LabelledSpans.h - a token classifier's flags as text spans ---------===//
//
// What an editor underlines: the words (a token that starts with whitespace,
// and the tokens after it up to the next such token) that hold a token whose
// label is not the first ("O"), labelled with the first such label. Leading
// whitespace is left out.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_TOOLS_SERVE_LABELLEDSPANS_H
#define INCNN_TOOLS_SERVE_LABELLEDSPANS_H

#include "incnn/runtime/Document.h"
#include "incnn/runtime/Session.h"

#include <cstdint>
#include <vector>

namespace incnn::serve {

using runtime::Document;
using runtime::Session;

struct LabelledSpan {
  int64_t begin = 0, end = 0; ///< bytes [begin, end) of the text
  size_t label = 0;
};

class TokenLabels {
public:
  /// Over a token classifier's session and its document.
  TokenLabels(const Document &document, const Session &session, size_t width);

  int64_t rows() const { return rows_; }
  /// The spans of every row.
  std::vector<LabelledSpan> all() const { return spans(0, rows_); }
  /// The spans that touch bytes [begin, end] of the text, whole, and the byte
  /// range they and [begin, end] cover together (what a client replaces).
  std::vector<LabelledSpan> touching(int64_t &begin, int64_t &end) const;

private:
  size_t label(int64_t row) const;
  /// True if row starts a word (the first row, or whitespace first).
  bool startsRun(int64_t row) const;
  std::vector<LabelledSpan> spans(int64_t first, int64_t last) const;
  /// The first row whose bytes end at or after `byte`.
  int64_t rowAt(int64_t byte) const;

  const Document &document_;
  const std::vector<float> &out_;
  size_t width_;
  int64_t rows_;
};

} // namespace incnn::serve

#endif // INCNN_TOOLS_SERVE_LABELLEDSPANS_H
