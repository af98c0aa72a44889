//===- TrainTokenizer.h - small sentencepiece models for tests ---*- C++
//-*-===//
#ifndef INCNN_TEST_TRAINTOKENIZER_H
#define INCNN_TEST_TRAINTOKENIZER_H

#include <sentencepiece_trainer.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace incnn::test {

/// Trains a byte-fallback sentencepiece model of `modelType` ("bpe" or
/// "unigram") on a fixed small corpus (ASCII words, digits, and a few
/// accented letters and the euro sign; no CJK or emoji, so those become byte
/// pieces) and returns the serialized model.
inline std::string trainTokenizer(const std::string &modelType = "bpe",
                                  int vocabSize = 300) {
  static int counter = 0;
  std::string dir = "/tmp/incnn-test-spm-" + std::to_string(getpid()) + "-" +
                    std::to_string(counter++);
  std::string corpus = dir + ".txt";
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 100; ++i)
      out << "the quick brown fox jumps over the lazy dog " << i << "\n"
          << "incremental networks reuse work after small edits\n"
          << "\xc3\xbc"
             "ber caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 5\n";
  }
  auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus + " --model_prefix=" + dir + " --vocab_size=" +
      std::to_string(vocabSize) + " --model_type=" + modelType +
      " --byte_fallback=true --hard_vocab_limit=false --minloglevel=2");
  if (!st.ok()) {
    std::fprintf(stderr, "training the tokenizer: %s\n", st.ToString().c_str());
    std::abort();
  }
  std::ifstream in(dir + ".model", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::remove(corpus.c_str());
  std::remove((dir + ".model").c_str());
  std::remove((dir + ".vocab").c_str());
  return ss.str();
}

} // namespace incnn::test

#endif // INCNN_TEST_TRAINTOKENIZER_H
