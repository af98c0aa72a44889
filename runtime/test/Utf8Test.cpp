//===- Utf8Test.cpp - Documents hold valid UTF-8 only ---------------------===//
//
// findInvalidUtf8 agrees with a strict decoder, and Document refuses a text
// or a replacement that is not valid UTF-8, changing nothing.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Document.h"
#include "incnn/runtime/Runtime.h"

#include "ProgramBuilder.h"
#include "TrainTokenizer.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;

namespace {

TEST(Utf8, FindInvalid) {
  struct Case {
    std::string text;
    int64_t bad;
  };
  const Case cases[] = {
      {"", -1},
      {"plain ascii\n", -1},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", -1},
      {"\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf", -1}, // U+D7FF E000 10FFFF
      {std::string("nul\0ok", 6), -1},
      {"ab\xff", 2},                  // never a lead byte
      {"a\x80", 1},                   // a lone continuation byte
      {"\xc3", 0},                    // truncated
      {"\xc3(", 0},                   // bad continuation
      {"\xc0\xaf", 0},                // overlong '/'
      {"\xe0\x80\xaf", 0},            // overlong, three bytes
      {"\xf0\x80\x80\xaf", 0},        // overlong, four bytes
      {"x\xed\xa0\x80", 1},           // a surrogate (U+D800)
      {"\xf4\x90\x80\x80", 0},        // past U+10FFFF
      {"\xf5\x80\x80\x80", 0},        // never a lead byte
      {"\xe2\x82", 0},                // truncated at the end
      {"\xf0\x9f\x98(", 0},           // bad last byte
      {"ok \xe2\x82\xac\xe2\x82", 6}, // the second character is cut
  };
  for (const Case &c : cases)
    EXPECT_EQ(findInvalidUtf8(c.text), c.bad) << c.text;
}

TEST(Utf8, DocumentRefusesInvalidText) {
  std::unique_ptr<Tokenizer> tokenizer;
  ASSERT_TRUE(
      Tokenizer::create(incnn::test::trainTokenizer("bpe"), tokenizer).ok());
  DecoderConfig c;
  c.position = "none";
  c.vocab = tokenizer->vocabSize();
  c.task = TaskKind::Classifier;
  Program program = buildDecoder(c);
  Session session(program, {1});
  Document doc(session, *tokenizer);

  Status st = doc.reset("the fox \xff");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.error, "the text is not valid UTF-8 (byte 8)");
  EXPECT_TRUE(doc.text().empty());

  ASSERT_TRUE(doc.reset("the quick brown fox").ok());
  std::vector<int32_t> tokens = session.tokens();
  for (const char *bad : {"\xc3", "\xed\xa0\x80", "ok\x80"}) {
    st = doc.applyText(4, 4, bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.error.find("the replacement text is not valid UTF-8"),
              std::string::npos)
        << st.error;
    EXPECT_EQ(doc.text(), "the quick brown fox");
    EXPECT_EQ(session.tokens(), tokens);
  }
  // Valid text joined at character boundaries stays valid.
  ASSERT_TRUE(doc.applyText(4, 9, "caf\xc3\xa9").ok());
  EXPECT_EQ(doc.text(), "the caf\xc3\xa9 brown fox");
  EXPECT_TRUE(doc.verifyTokens().ok());
}

} // namespace
