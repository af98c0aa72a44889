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
  /// Token ids -> text.
  Status decode(const std::vector<int32_t> &ids, std::string &text) const;
  /// The piece of one id ("" when out of range).
  std::string piece(int32_t id) const;
  int32_t vocabSize() const;

private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_TOKENIZER_H
