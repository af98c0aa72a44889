//===- ConcurrencyTest.cpp - sessions on concurrent threads ---------------===//
//
// Several sessions over one shared Program, each on its own thread and with
// its own kernel thread pool, edit concurrently and stay exact. The
// sanitizer run of scripts/test.sh builds this under ThreadSanitizer.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"

#include "ProgramBuilder.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

using namespace incnn::runtime;

TEST(Concurrency, SessionsShareOneProgramAcrossThreads) {
  DecoderConfig c;
  c.position = "none";
  c.dim = 64;
  c.ffn = 128;
  c.maxPositions = 160;
  c.task = TaskKind::Classifier;
  c.vq = {{0, false, 1, 8}, {1, false, 2, 8}};
  const Program program = buildDecoder(c);
  ASSERT_TRUE(verifyProgram(program).ok());
  constexpr int kThreads = 4, kEdits = 12;
  std::atomic<int> mismatches{0}, failures{0}, checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(uint32_t(100 + t));
      std::uniform_int_distribution<int32_t> tok(0, c.vocab - 1);
      // Two kernel threads each: large updates use the session's pool.
      Session session(program, {2});
      Evaluator oracle(program, {2});
      std::vector<int32_t> tokens(120);
      for (int32_t &x : tokens)
        x = tok(rng);
      if (!session.reset(tokens).ok())
        ++failures;
      for (int e = 0; e < kEdits; ++e) {
        int64_t n = int64_t(session.tokens().size());
        std::uniform_int_distribution<int64_t> at(0, n - 1);
        TokenEdit edit = e % 3 == 0   ? TokenEdit::insert(at(rng), {tok(rng)})
                         : e % 3 == 1 ? TokenEdit::erase(at(rng), 1)
                                      : TokenEdit::replace(at(rng), {tok(rng)});
        if (!session.apply(edit).ok() ||
            !oracle.evaluate(session.tokens()).ok()) {
          ++failures;
          continue;
        }
        const std::vector<float> &got = session.output();
        if (!test::bitsEqual(got.data(), oracle.output().data(), got.size()))
          ++mismatches;
        ++checked;
      }
    });
  for (std::thread &th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(checked.load(), kThreads * kEdits);
}
