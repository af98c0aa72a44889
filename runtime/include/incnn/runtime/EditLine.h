//===- EditLine.h - one line of an edits file --------------------*- C++
//-*-===//
//
// Parses the JSON-lines edit format (README, docs/program-format.md): one edit
// object, or an array of them applied as one batch. Token edits:
//   {"op":"replace","at":I,"tokens":[...]},
//   {"op":"insert","at":I,"tokens":[...]},
//   {"op":"delete","at":I,"count":C}
// and text edits {"op":"text","start":B,"end":E,"text":"..."} (byte offsets).
// Every limit of Limits.h is enforced while parsing.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_EDITLINE_H
#define INCNN_RUNTIME_EDITLINE_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace incnn::runtime {

/// A parsed line: token edits or text edits (never both).
struct EditLine {
  std::vector<TokenEdit> tokenEdits;
  std::vector<TextEdit> textEdits;
};

/// Parses one line. Token ids are checked against `vocabSize`, and a tokens
/// array longer than `maxTokens` is refused as soon as it is seen. Errors
/// name the edit within a batch ("edit 2: ...").
Status parseEditLine(std::string_view line, int32_t vocabSize, size_t maxTokens,
                     EditLine &out);

/// Reads up to the next '\n' (not included) into `line`. Returns false at
/// the end of the input. A line longer than kMaxEditLineBytes sets `error`
/// (and stops reading it).
bool readEditLine(std::istream &in, std::string &line, Status &error);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_EDITLINE_H
