//===- Tokenizer.cpp - sentencepiece tokenizer wrapper --------------------===//

#include "incnn/runtime/Tokenizer.h"

#include <sentencepiece_processor.h>

namespace incnn::runtime {

namespace {

/// Reads one protobuf varint; false at the end of the data or on overflow.
bool readVarint(std::string_view data, size_t &at, uint64_t &value) {
  value = 0;
  for (int shift = 0; shift < 64 && at < data.size(); shift += 7) {
    uint8_t byte = uint8_t(data[at++]);
    value |= uint64_t(byte & 0x7f) << shift;
    if (!(byte & 0x80))
      return true;
  }
  return false;
}

/// Calls visit(field, varint, payload) for each varint and length-delimited
/// field of protobuf message `data` (payload empty for varints); false when
/// the message does not parse.
template <class Visit> bool forEachField(std::string_view data, Visit visit) {
  size_t at = 0;
  while (at < data.size()) {
    uint64_t key, value = 0;
    if (!readVarint(data, at, key))
      return false;
    std::string_view payload;
    switch (key & 7) {
    case 0:
      if (!readVarint(data, at, value))
        return false;
      break;
    case 1:
      at += 8;
      break;
    case 2:
      if (!readVarint(data, at, value) || value > data.size() - at)
        return false;
      payload = data.substr(at, size_t(value));
      at += size_t(value);
      break;
    case 5:
      at += 4;
      break;
    default:
      return false;
    }
    visit(key >> 3, value, payload);
  }
  return at == data.size();
}

/// The last value of varint field `field`, or `fallback`.
uint64_t findVarint(std::string_view data, uint64_t field, uint64_t fallback) {
  uint64_t found = fallback;
  bool ok = forEachField(data, [&](uint64_t f, uint64_t v, std::string_view p) {
    if (f == field && p.empty())
      found = v;
  });
  return ok ? found : fallback;
}

/// The payload of the last length-delimited field `field`, or "".
std::string_view findMessage(std::string_view data, uint64_t field) {
  std::string_view found;
  bool ok = forEachField(data, [&](uint64_t f, uint64_t, std::string_view p) {
    if (f == field)
      found = p;
  });
  return ok ? found : std::string_view();
}

constexpr uint64_t kModelProtoTrainerSpec = 2;
constexpr uint64_t kTrainerSpecModelType = 3;
constexpr uint64_t kModelTypeUnigram = 1, kModelTypeBpe = 2;

} // namespace

bool isCut(std::string_view text, int64_t i) {
  auto printable = [&](int64_t j) {
    return j >= 0 && j < int64_t(text.size()) && text[size_t(j)] > ' ' &&
           text[size_t(j)] < 0x7f;
  };
  return i > 0 && i < int64_t(text.size()) && text[size_t(i)] == ' ' &&
         printable(i - 1) && printable(i + 1);
}

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Tokenizer::Tokenizer() : impl(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

Status Tokenizer::create(std::string_view serializedModel,
                         std::unique_ptr<Tokenizer> &out) {
  if (serializedModel.empty())
    return Status::invalidArgument("the program has no tokenizer");
  try {
    std::unique_ptr<Tokenizer> tok(new Tokenizer());
    auto st = tok->impl->sp.LoadFromSerializedProto(
        absl::string_view(serializedModel.data(), serializedModel.size()));
    if (!st.ok())
      return Status::invalidArgument("bad sentencepiece model: " +
                                     st.ToString());
    // BPE merges never cross a piece boundary, so text cut where every
    // segmentation has a boundary tokenizes in parts. (Unigram's Viterbi
    // scores are float sums over the whole text; it is not cut.)
    uint64_t type =
        findVarint(findMessage(serializedModel, kModelProtoTrainerSpec),
                   kTrainerSpecModelType, kModelTypeUnigram);
    tok->cutsAtSpaces_ = type == kModelTypeBpe && tok->probeCutsAtSpaces();
    out = std::move(tok);
  } catch (const std::exception &e) {
    return Status::invalidArgument(std::string("bad sentencepiece model: ") +
                                   e.what());
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
      return Status::invalidArgument("tokenizer: " + st.ToString());
    ids.assign(out.begin(), out.end());
  } catch (const std::exception &e) {
    return Status::invalidArgument(std::string("tokenizer: ") + e.what());
  }
  return Status::success();
}

Status Tokenizer::encode(std::string_view text, std::vector<int32_t> &ids,
                         std::vector<int64_t> &starts) const {
  try {
    sentencepiece::ImmutableSentencePieceText spt =
        impl->sp.EncodeAsImmutableProto(
            absl::string_view(text.data(), text.size()));
    size_t n = spt.pieces_size();
    ids.resize(n);
    starts.resize(n);
    for (size_t i = 0; i < n; ++i) {
      auto piece = spt.pieces(int(i));
      ids[i] = int32_t(piece.id());
      starts[i] = int64_t(piece.begin());
    }
  } catch (const std::exception &e) {
    return Status::invalidArgument(std::string("tokenizer: ") + e.what());
  }
  return Status::success();
}

bool Tokenizer::probeCutsAtSpaces() const {
  // U+2581 (the whitespace mark) only as a piece's first character: every
  // segmentation then has a boundary before each mark.
  const std::string mark = "\xe2\x96\x81";
  for (int32_t id = 0; id < vocabSize(); ++id) {
    const std::string &p = impl->sp.IdToPiece(id);
    if (p.size() > mark.size() && p.find(mark, 1) != std::string::npos)
      return false;
  }
  // A leading space becomes the dummy prefix's mark, and the text before a
  // cut tokenizes alone.
  auto tokens = [&](std::string_view t) {
    std::vector<int32_t> ids;
    return encode(t, ids).ok() ? ids : std::vector<int32_t>{-1};
  };
  for (std::string_view word : {"a", "the", "x.y", "Q9", "(b)"}) {
    std::vector<int32_t> alone = tokens(word);
    if (tokens(" " + std::string(word)) != alone)
      return false;
    std::vector<int32_t> joined = tokens("z= " + std::string(word)),
                         parts = tokens("z=");
    parts.insert(parts.end(), alone.begin(), alone.end());
    if (joined != parts)
      return false;
  }
  return true;
}

Status Tokenizer::decode(const std::vector<int32_t> &ids,
                         std::string &text) const {
  int32_t vocab = vocabSize();
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      return Status::invalidArgument("token " + std::to_string(id) +
                                     " is outside the tokenizer's vocabulary");
  try {
    std::vector<int> in(ids.begin(), ids.end());
    auto st = impl->sp.Decode(in, &text);
    if (!st.ok())
      return Status::invalidArgument("tokenizer: " + st.ToString());
  } catch (const std::exception &e) {
    return Status::invalidArgument(std::string("tokenizer: ") + e.what());
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
