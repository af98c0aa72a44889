//===- LabelledSpans.cpp - a token classifier's flags as text spans -------===//
#include "LabelledSpans.h"

#include "incnn/runtime/Serialize.h"

#include <algorithm>

namespace incnn::serve {

static bool isSpace(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

TokenLabels::TokenLabels(const Document &document, const Session &session,
                         size_t width)
    : document_(document), out_(session.output()), width_(width),
      rows_(width ? int64_t(out_.size() / width) : 0) {}

size_t TokenLabels::label(int64_t row) const {
  return runtime::argmaxOf(out_.data() + size_t(row) * width_, width_);
}

bool TokenLabels::startsRun(int64_t row) const {
  if (row == 0)
    return true;
  int64_t begin = 0, end = 0;
  document_.tokenBytes(row, begin, end);
  return begin < end && isSpace(document_.text()[size_t(begin)]);
}

std::vector<LabelledSpan> TokenLabels::spans(int64_t first,
                                             int64_t last) const {
  std::vector<LabelledSpan> out;
  const std::string &text = document_.text();
  for (int64_t row = first; row < last;) {
    // One word: this row and the ones up to the next that starts a run.
    int64_t end = row + 1;
    while (end < last && !startsRun(end))
      ++end;
    size_t l = 0;
    for (int64_t r = row; r < end && !l; ++r)
      l = label(r);
    int64_t begin = 0, stop = 0, unused = 0;
    document_.tokenBytes(row, begin, unused);
    document_.tokenBytes(end - 1, unused, stop);
    while (begin < stop && isSpace(text[size_t(begin)]))
      ++begin;
    if (l && begin < stop)
      out.push_back({begin, stop, l});
    row = end;
  }
  return out;
}

int64_t TokenLabels::rowAt(int64_t byte) const {
  int64_t lo = 0, hi = rows_;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2, begin = 0, end = 0;
    document_.tokenBytes(mid, begin, end);
    if (end < byte)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

std::vector<LabelledSpan> TokenLabels::touching(int64_t &begin,
                                                int64_t &end) const {
  int64_t first = std::max<int64_t>(0, rowAt(begin) - 1);
  int64_t last = std::min(rows_, rowAt(end) + 2);
  while (first > 0 && !startsRun(first))
    --first;
  while (last < rows_ && !startsRun(last))
    ++last;
  std::vector<LabelledSpan> out = spans(first, last);
  for (const LabelledSpan &s : out) {
    begin = std::min(begin, s.begin);
    end = std::max(end, s.end);
  }
  return out;
}

} // namespace incnn::serve
