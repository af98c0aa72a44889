//===- Tokenizer.cpp - sentencepiece tokenizer wrapper --------------------===//

#include "incnn/runtime/Tokenizer.h"

#include <sentencepiece_processor.h>

namespace incnn::runtime {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Tokenizer::Tokenizer() : impl(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

Status Tokenizer::create(std::string_view serializedModel,
                         std::unique_ptr<Tokenizer> &out) {
  if (serializedModel.empty())
    return Status::failure("the program has no tokenizer");
  try {
    std::unique_ptr<Tokenizer> tok(new Tokenizer());
    auto st = tok->impl->sp.LoadFromSerializedProto(
        absl::string_view(serializedModel.data(), serializedModel.size()));
    if (!st.ok())
      return Status::failure("bad sentencepiece model: " + st.ToString());
    out = std::move(tok);
  } catch (const std::exception &e) {
    return Status::failure(std::string("bad sentencepiece model: ") + e.what());
  }
  return Status::success();
}

Status Tokenizer::encode(std::string_view text,
                         std::vector<int32_t> &ids) const {
  try {
    std::vector<int> out;
    auto st =
        impl->sp.Encode(absl::string_view(text.data(), text.size()), &out);
    if (!st.ok())
      return Status::failure("tokenizer: " + st.ToString());
    ids.assign(out.begin(), out.end());
  } catch (const std::exception &e) {
    return Status::failure(std::string("tokenizer: ") + e.what());
  }
  return Status::success();
}

Status Tokenizer::decode(const std::vector<int32_t> &ids,
                         std::string &text) const {
  int32_t vocab = vocabSize();
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      return Status::failure("token " + std::to_string(id) +
                             " is outside the tokenizer's vocabulary");
  try {
    std::vector<int> in(ids.begin(), ids.end());
    auto st = impl->sp.Decode(in, &text);
    if (!st.ok())
      return Status::failure("tokenizer: " + st.ToString());
  } catch (const std::exception &e) {
    return Status::failure(std::string("tokenizer: ") + e.what());
  }
  return Status::success();
}

std::string Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocabSize())
    return {};
  return impl->sp.IdToPiece(id);
}

int32_t Tokenizer::vocabSize() const { return impl->sp.GetPieceSize(); }

} // namespace incnn::runtime
