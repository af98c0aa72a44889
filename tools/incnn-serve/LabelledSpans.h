//===- LabelledSpans.h - a token classifier's flags as text spans ---------===//
//
// What an editor underlines: the byte ranges of tokens whose label is not the
// first ("O"). A token that starts with whitespace starts a new span, and so
// does a change of label; the other tokens extend the span before them, so a
// word split into several tokens is one span. Leading whitespace is left out.
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
  /// True if row starts a new run (whitespace first, or another label).
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
