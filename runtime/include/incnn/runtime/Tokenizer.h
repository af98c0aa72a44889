//===- Tokenizer.h - sentencepiece tokenizer wrapper ------------*- C++ -*-===//
//
// Wraps a serialized sentencepiece model (Program::tokenizer). Encoding adds
// no BOS/EOS. A Tokenizer is immutable after creation and may be used from
// several threads at once.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_TOKENIZER_H
#define INCNN_RUNTIME_TOKENIZER_H

#include "incnn/runtime/Program.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace incnn::runtime {

class Tokenizer {
public:
  /// Parses a serialized sentencepiece model.
  static Status create(std::string_view serializedModel,
                       std::unique_ptr<Tokenizer> &out);
  ~Tokenizer();

  /// Text -> token ids (no BOS).
  Status encode(std::string_view text, std::vector<int32_t> &ids) const;
  /// Like encode, and `starts[i]` is the byte offset in `text` where piece i
  /// begins.
  Status encode(std::string_view text, std::vector<int32_t> &ids,
                std::vector<int64_t> &starts) const;
  /// True if tokenizing a text equals tokenizing its pieces separately when
  /// it is cut before a single ASCII space between printable ASCII
  /// characters (see isCut): a BPE model whose pieces hold U+2581 only as
  /// their first character, with a dummy prefix and whitespace collapsing.
  /// Document tokenizes incrementally only then.
  bool cutsAtSpaces() const { return cutsAtSpaces_; }
  /// Token ids -> text.
  Status decode(const std::vector<int32_t> &ids, std::string &text) const;
  /// The piece of one id ("" when out of range).
  std::string piece(int32_t id) const;
  int32_t vocabSize() const;

private:
  Tokenizer();
  bool probeCutsAtSpaces() const;
  struct Impl;
  std::unique_ptr<Impl> impl;
  bool cutsAtSpaces_ = false;
};

/// True if byte `i` of `text` is a single ASCII space between printable,
/// non-space ASCII characters: where Tokenizer::cutsAtSpaces lets a text be
/// tokenized in parts.
bool isCut(std::string_view text, int64_t i);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_TOKENIZER_H
