//===- ThreadPoolTest.cpp - Thread creation failures are errors -----------===//
//
// When the system refuses a thread part way through starting a pool, the
// pool joins the workers it started and throws; Session and the C API
// report it instead of hanging. Each case runs in a forked child (a death
// test) whose address space is capped so that thread stacks cannot be
// mapped; an alarm turns a hang into a failure.
//
//===----------------------------------------------------------------------===//
#include "ThreadPool.h"
#include "ProgramBuilder.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/incnn.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>

using namespace incnn::runtime;

namespace {

// Not for ThreadSanitizer, whose runtime maps memory of its own for every
// thread (AddressSanitizer passes).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define INCNN_SKIP_RLIMIT_AS 1
#endif
#endif

/// Caps the address space 128 MiB above what the process maps now: far
/// less than the stacks of 500 threads (8 MiB each with the usual stack
/// limit). Then a hang longer than 10 s ends the child with SIGALRM.
void capAddressSpace() {
  std::ifstream statm("/proc/self/statm");
  rlim_t pages = 0;
  statm >> pages;
  rlim_t limit = pages * rlim_t(sysconf(_SC_PAGESIZE)) + (rlim_t(128) << 20);
  struct rlimit r = {limit, limit};
  if (setrlimit(RLIMIT_AS, &r) != 0)
    _exit(3);
  alarm(10);
}

/// Runs `make` with the address space capped; exits 0 printing the
/// error when it throws std::system_error, 1 when it succeeds.
template <typename F> [[noreturn]] void expectThreadError(F make) {
  capAddressSpace();
  try {
    make();
  } catch (const std::system_error &e) {
    std::fprintf(stderr, "%s\n", e.what());
    _exit(0);
  }
  _exit(1);
}

Program smallProgram() {
  DecoderConfig c;
  c.task = TaskKind::Classifier;
  return buildDecoder(c);
}

class ThreadStart : public ::testing::Test {
protected:
  void SetUp() override {
#ifdef INCNN_SKIP_RLIMIT_AS
    GTEST_SKIP() << "not run under ThreadSanitizer";
#endif
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(ThreadStart, PoolJoinsStartedWorkersAndThrows) {
  EXPECT_EXIT(expectThreadError([] { ThreadPool pool(500); }),
              ::testing::ExitedWithCode(0), "cannot start 499 worker threads");
}

TEST_F(ThreadStart, SessionAndEvaluatorThrow) {
  Program p = smallProgram();
  EXPECT_EXIT(expectThreadError([&] { Session s(p, SessionOptions{500}); }),
              ::testing::ExitedWithCode(0), "cannot start 499 worker threads");
  EXPECT_EXIT(expectThreadError([&] { Evaluator e(p, EvaluatorOptions{500}); }),
              ::testing::ExitedWithCode(0), "cannot start 499 worker threads");
}

TEST_F(ThreadStart, CApiReturnsAnError) {
  Program p = smallProgram();
  std::string path = ::testing::TempDir() + "incnn_threadstart_" +
                     std::to_string(getpid()) + ".incnn";
  ASSERT_TRUE(writeProgram(p, path).ok());
  incnn_program_t *prog = nullptr;
  ASSERT_EQ(incnn_program_load(path.c_str(), &prog), INCNN_OK);
  std::remove(path.c_str());
  EXPECT_EXIT(
      {
        capAddressSpace();
        incnn_options_t opts;
        incnn_options_init(&opts);
        opts.num_threads = 500;
        incnn_session_t *session = nullptr;
        incnn_status_t st = incnn_session_create(prog, &opts, &session);
        std::fprintf(stderr, "status %d: %s\n", int(st), incnn_last_error());
        _exit(st == INCNN_ERROR_INTERNAL && !session ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "cannot start 499 worker threads");
  incnn_program_destroy(prog);
}

} // namespace
